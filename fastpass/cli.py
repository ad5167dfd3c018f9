"""`fastpass` command line. Each subcommand lives in its own module exposing
``add_parser(subparsers)``, which registers the parser and sets ``func`` as its handler."""
from __future__ import annotations

import argparse
import importlib
import os
import re
import sys

SUBCOMMANDS = [
    "fastpass.cli_simulate",
    "fastpass.cli_bench",
    "fastpass.cli_screen",
    "fastpass.cli_whatif",
    "fastpass.cli_calibrate",
]


class _OneLineParser(argparse.ArgumentParser):
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="fastpass", description="pass@K screening of language models, fast")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(name).add_parser(sub)
    return parser


def _version() -> str:
    from fastpass import __version__

    return f"fastpass {__version__}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("fastpass: interrupted (finished problems are saved; rerun with --resume)", file=sys.stderr)
        return 130
    except (ValueError, TypeError, KeyError, OSError, RuntimeError, re.error, ImportError) as exc:
        # One line naming the fix; FASTPASS_DEBUG=1 shows the traceback.
        if os.environ.get("FASTPASS_DEBUG"):
            raise
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"fastpass: error: {type(exc).__name__}: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
