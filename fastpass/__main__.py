import sys

from fastpass.cli import main

sys.exit(main())
