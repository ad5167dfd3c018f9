"""bench/gpu_check.sh on CPU, plan only: two stages within the device's limits, <= 5 files back;
and every bench writes each row to results.csv as its case finishes (a cut-off run keeps them)."""
import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "bench" / "gpu_check.sh"
STAGE_BUDGET = 480  # seconds one device command may spend per stage (600 s limit, with margin)
MAX_FILES = 5       # of the 8 files the device tool brings back: room to spare


def _plan(tmp_path, *stage, env=None):
    out = "out"  # relative on purpose: the script must make it absolute before its cd
    proc = subprocess.run(["bash", str(SCRIPT), out, *stage], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "GPU_CHECK_PLAN": "1", **(env or {})}, timeout=120)
    return proc, tmp_path / out


def _steps(summary: str) -> dict:
    steps = {}
    for stage, name, limit, cmd in re.findall(r"^plan: stage (\d) step (\S+) limit (\d+)s: (.*)$", summary, re.M):
        steps.setdefault(int(stage), []).append((name, int(limit), cmd))
    return steps


def test_plan_shows_two_stages_within_budget_and_at_most_five_files(tmp_path):
    proc, out = _plan(tmp_path)
    assert proc.returncode == 0, proc.stderr
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= MAX_FILES, files
    assert all(p.is_file() for p in out.iterdir()), "no folders: the device tool flattens nothing"
    assert {"summary.txt", "stage1.log", "stage2.log", "logs.tar.gz"} <= set(files)
    summary = (out / "summary.txt").read_text()
    steps = _steps(summary)
    assert set(steps) == {1, 2}
    for stage, items in steps.items():
        total = sum(limit for _, limit, _ in items)
        assert total <= STAGE_BUDGET, (stage, total)
        assert f"plan: stage {stage} total of step limits {total}s" in summary
    names = {s: [n for n, _, _ in items] for s, items in steps.items()}
    assert names[1] == ["build", "pytest_engine", "bench_e2e"]
    assert names[2] == ["pytest_rest", "bench_regex", "bench_sampler", "bench_attention", "bench_passk"]
    cmds = {n: c for items in steps.values() for n, _, c in items}
    assert "FASTPASS_CUDA_ARCHS=" in cmds["build"]
    assert "pip install --no-build-isolation --no-deps -e ." in cmds["build"]
    assert "--cases P1a,P1b,P1c" in cmds["bench_e2e"]
    for name in ("pytest_engine", "pytest_rest"):
        assert "-m gpu" in cmds[name] and "--timeout=120" in cmds[name] and "--durations=20" in cmds[name]
    assert "tests/test_engine_gpu.py" in cmds["pytest_engine"]
    assert "--ignore tests/test_engine_gpu.py" in cmds["pytest_rest"]
    results = str(out.resolve() / "results.csv")
    for name, cmd in cmds.items():
        if name.startswith("bench_"):
            assert f"--device cuda --csv {results}" in cmd, cmd  # absolute: written in place, row by row


def test_one_stage_writes_only_its_own_log_and_bad_stage_is_one_line(tmp_path):
    proc, out = _plan(tmp_path, "2")
    assert proc.returncode == 0
    assert sorted(p.name for p in out.iterdir()) == ["logs.tar.gz", "stage2.log", "summary.txt"]
    assert set(_steps((out / "summary.txt").read_text())) == {2}
    proc, _ = _plan(tmp_path, "3")
    assert proc.returncode == 2 and proc.stderr.strip() == "gpu_check: STAGE must be 1, 2 or all, got '3'"


def test_a_smaller_stage_budget_cuts_and_skips_steps(tmp_path):
    proc, out = _plan(tmp_path, "1", env={"GPU_CHECK_STAGE_S": "200"})
    summary = (out / "summary.txt").read_text()
    steps = _steps(summary)[1]
    assert sum(limit for _, limit, _ in steps) <= 200
    assert [n for n, _, _ in steps] == ["build", "pytest_engine"] and steps[1][1] == 60
    assert "stage 1 step bench_e2e: SKIPPED (stage budget spent)" in summary


class _FirstRow(Exception):
    pass


def _stop_at_first_row(sink, csv_path):
    """Wraps the sink: after it handled the first row, that row must already be in the CSV on disk."""
    emit = sink.emit

    def checked(rows):
        emit(rows)
        with open(csv_path, newline="") as fh:
            on_disk = list(csv.DictReader(fh))
        assert on_disk and on_disk[0]["case"] == rows[0]["case"]
        assert on_disk[0]["commit"] and on_disk[0]["device"] and on_disk[0]["date"]
        raise _FirstRow(rows[0]["case"])

    sink.emit = checked


@pytest.mark.parametrize("area", ["passk", "sampler", "attention", "regex", "e2e"])
def test_every_bench_writes_each_row_to_csv_as_its_case_finishes(area, tmp_path, monkeypatch, capsys):
    """Runs the bench (CPU, --quick) only until its first row: the row is printed and on disk while
    the bench is still running, so a step stopped at its time limit keeps every finished case."""
    from fastpass import cli_bench

    mod = cli_bench.load_bench(area)
    common = sys.modules["bench._common"]
    kw = {}
    if area == "e2e":  # P6's code path on a tiny model of the same family; vLLM absent
        from transformers import LlamaConfig

        monkeypatch.setattr(mod, "smollm2_135m_config", lambda: LlamaConfig(
            vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=512))
        monkeypatch.setenv("VLLM_VENV", str(tmp_path / "no-venv"))
        kw = dict(cases=["P6"], loads=["idle"])
    csv_path = tmp_path / "results.csv"
    with common.recording("cpu", csv_path) as sink:
        _stop_at_first_row(sink, csv_path)
        with pytest.raises(_FirstRow):
            mod.run(quick=True, device="cpu", **kw)
    assert "| bench | case |" in capsys.readouterr().out


def test_a_step_past_its_limit_gets_sigint_even_from_a_background_shell(tmp_path):
    """The limit stops a step with SIGINT, which Python turns into KeyboardInterrupt (pytest prints
    its summary, a bench keeps its rows), also when the shell was started in the background and
    so ignores SIGINT (inherited by its children unless the step resets it)."""
    import signal

    sleeper = ("import time\nprint('started', flush=True)\ntry:\n    time.sleep(60)\n"
               "except KeyboardInterrupt:\n    print('KeyboardInterrupt: finishing cleanly', flush=True)\n    raise SystemExit(7)\n")
    script = (f'export GPU_CHECK_SOURCE_ONLY=1 GPU_CHECK_MIN_STEP_S=1\nsource "{SCRIPT}" "{tmp_path}/out" 1\n'
              f'begin_stage 1\nstep sleepy 3 $PY -c "$SLEEPER"\nstep quick 30 $PY -c "print(42)"\n')
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "SLEEPER": sleeper, "PYTHON": sys.executable},
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert proc.returncode == 0, proc.stderr
    log = (tmp_path / "out" / "stage1.log").read_text()
    summary = (tmp_path / "out" / "summary.txt").read_text()
    assert "started" in log and "KeyboardInterrupt: finishing cleanly" in log
    assert "stage 1 step sleepy: TIMED OUT (SIGINT at 3s)" in summary
    assert re.search(r"stage 1 step quick: rc=0 \(\d+s of 30s\)", summary) and "42" in log
