"""Packaging a newcomer meets first: the lm-eval extra as pip reads it, and a CLI that answers
--help without importing torch."""
from __future__ import annotations

import email
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "numpy", "matplotlib", "transformers", "triton")


@pytest.fixture(scope="module")
def metadata(tmp_path_factory):
    """The core metadata pip gets for `pip install -e .`: setuptools' PEP 660 hook, metadata only
    (no extension build), run in a subprocess so setup.py sees a fresh interpreter."""
    pytest.importorskip("setuptools", minversion="61")  # [project] tables in pyproject.toml
    out = tmp_path_factory.mktemp("metadata")
    code = ("import sys; from setuptools import build_meta as b; "
            f"print(b.prepare_metadata_for_build_editable({str(out)!r}))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dist_info = out / proc.stdout.strip().splitlines()[-1]
    return email.message_from_string((dist_info / "METADATA").read_text())


def _requires(meta, extra: str) -> dict[str, str]:
    from packaging.requirements import Requirement

    out = {}
    for line in meta.get_all("Requires-Dist") or []:
        req = Requirement(line)
        if req.marker is not None and req.marker.evaluate({"extra": extra}) \
                and not req.marker.evaluate({"extra": "__none__"}):
            out[req.name.lower().replace("_", "-")] = str(req.specifier)
    return out


def test_lm_eval_extra_is_spelled_the_way_every_pip_matches_it(metadata):
    provided = metadata.get_all("Provides-Extra")
    # pip < 23.3 compares the extra you type with Provides-Extra literally; setuptools writes the
    # normalised name (PEP 685). So the spelling pip finds everywhere is the normalised one.
    assert "lm-eval" in provided, provided
    reqs = _requires(metadata, "lm-eval")
    assert "lm-eval" in reqs and "transformers" in reqs, reqs
    from packaging.specifiers import SpecifierSet

    assert "0.4.13" in SpecifierSet(reqs["lm-eval"]) and "0.5.0" not in SpecifierSet(reqs["lm-eval"])
    for extra in ("demo", "test"):
        assert extra in provided
    assert {"transformers", "gguf", "accelerate"} <= set(_requires(metadata, "demo"))


def test_readme_installs_only_extras_the_metadata_provides(metadata):
    provided = set(metadata.get_all("Provides-Extra"))
    readme = (REPO / "README.md").read_text()
    asked = re.findall(r'pip install (?:-e )?"?\.\[([^\]]+)\]', readme)
    assert asked, "the README shows no pip install of an extra"
    for group in asked:
        for extra in group.split(","):
            assert extra.strip() in provided, f"README installs .[{group}], metadata provides {sorted(provided)}"


def test_lm_eval_console_script_is_declared(metadata):
    import tomllib

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["fastpass-lm-eval"] == "fastpass.integrations.lm_eval:main"
    assert scripts["fastpass"] == "fastpass.cli:main"


def _modules_after(code: str) -> list[str]:
    """Heavy modules loaded by ``code`` in a fresh interpreter."""
    probe = (f"import sys\n{code}\n"
             f"import json; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("argv", [["--help"], ["screen", "--help"], ["simulate", "--help"], ["--version"]])
def test_cli_help_imports_nothing_heavy(argv):
    """`fastpass --help` took ~3.5 s importing torch; the names are now imported on first use.
    (Speed is measured outside the tests; this checks the cause: no torch, numpy, matplotlib.)"""
    code = ("import runpy\n"
            f"sys.argv = ['fastpass'] + {argv!r}\n"
            "try:\n    runpy.run_module('fastpass', run_name='__main__')\n"
            "except SystemExit as e:\n    assert e.code in (0, None), e.code")
    assert _modules_after(code) == []


def test_import_fastpass_is_lazy_and_the_api_still_resolves():
    assert _modules_after("import fastpass") == []
    code = ("import fastpass as fp\n"
            "assert abs(fp.pass_at_k(10, 3, 2) - (1 - 7 * 6 / (10 * 9))) < 1e-12\n"
            "import fastpass.screen.loading, fastpass.verdict, fastpass.simulate\n"  # submodule imports ...
            "assert callable(fp.screen) and fp.screen.__name__ == 'screen'\n"        # ... keep the functions
            "assert fp.verdict.__name__ == 'verdict' and fp.simulate.__name__ == 'simulate'\n"
            "from fastpass import screen, Sampler, regex, load_default_model\n"
            "assert screen is fp.screen and regex.__name__ == 'fastpass.regex'\n"
            "assert {'pass_at_k', 'screen', 'load_default_model'} <= set(dir(fp))\n"
            "try:\n    fp.no_such_name\nexcept AttributeError as e:\n    assert 'no_such_name' in str(e)\n"
            "else:\n    raise SystemExit('no AttributeError')")
    assert "torch" in _modules_after(code)  # Sampler was asked for: now torch is there


def test_summary_names_skipped_data_tests_and_why(tmp_path):
    """conftest.py adds a 'skipped tests, by reason' section naming each data-dependent test."""
    import shutil

    shutil.copy(REPO / "tests" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_fake.py").write_text(
        "import pytest\n"
        "pytestmark = pytest.mark.skipif(True, reason='../shared/data is absent')\n"
        "def test_gsm8k_rows():\n    pass\n"
        "def test_math_rows():\n    pass\n")
    (tmp_path / "test_other.py").write_text(
        "import pytest\n"
        "@pytest.mark.skip(reason='needs something else')\n"
        "def test_x():\n    pass\n"
        "def test_runs():\n    assert 1 + 1 == 2\n")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    section = out[out.index("skipped tests, by reason"):]
    assert "2 skipped: ../shared/data is absent (the real eval sets" in section
    assert "test_fake.py::test_gsm8k_rows" in section and "test_fake.py::test_math_rows" in section
    assert "1 skipped: needs something else" in section and "test_other.py::test_x" in section
    assert section.index("shared/data") < section.index("needs something else")  # data first
    assert "1 passed, 3 skipped" in out
