"""Every user error of `fastpass screen` is one line (exit 2) naming the fix, and every check that
needs no model runs before the model loads (issue 12 items 9-14, 16, 18, 20; issue 15: help text
for every flag, the interrupt message)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import fastpass as fp
from fastpass.cli import main as cli_main
from fastpass.screen import loading

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_screen import _rows, _tiny_model, _tokenizer, _write_jsonl  # noqa: E402  (shared builders)

REPO = Path(__file__).resolve().parents[1]
FAST = ["--preset", "r1", "-n", "4", "--k", "1,4", "--max-new-tokens", "6", "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    tok = _tokenizer()
    model = _tiny_model(tok)
    folder = tmp_path_factory.mktemp("tiny-model")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    yield folder
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return _write_jsonl(tmp_path_factory.mktemp("data") / "sums.jsonl", _rows(3))


def _run(capsys, *args):
    code = cli_main(["screen", *args])
    captured = capsys.readouterr()
    return code, captured.err.strip(), captured.out


def _one_line(code, err, pattern):
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert re.search(pattern, err), (pattern, err)


@pytest.fixture
def no_model_load(monkeypatch):
    """Any attempt to load weights fails the test: the error must come before."""
    import transformers

    def boom(*a, **k):
        raise AssertionError("the model was loaded before the bad argument was reported")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", boom)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("FASTPASS_DEBUG", raising=False)


def _bad_files(tmp: Path) -> dict[str, Path]:
    latin1 = tmp / "latin1.jsonl"
    latin1.write_bytes(b'{"question": "What is 1 + 1 ?", "answer": "2"}\n{"question": "caf\xe9 ?", "answer": "1"}\n')
    surrogate = tmp / "surrogate.jsonl"
    surrogate.write_text('{"question": "What is 1 + 1 ?", "answer": "2"}\n{"question": "x\\udc80y", "answer": "1"}\n')
    gold_surrogate = tmp / "gold_surrogate.jsonl"
    gold_surrogate.write_text('{"question": "What is 1 + 1 ?", "answer": "\\ud800"}\n')
    deep = tmp / "deep.jsonl"
    deep.write_text('{"question": "What is 1 + 1 ?", "answer": "2"}\n' + "[" * 100000 + "\n")
    return {"latin1": latin1, "surrogate": surrogate, "gold_surrogate": gold_surrogate, "deep": deep}


def _cases(tiny_dir, data, tmp):
    files = _bad_files(tmp)
    model = ["--model", str(tiny_dir)]
    ok = [*model, "--data", str(data), *FAST]
    busy_out = tmp / "has-results"
    busy_out.mkdir()
    (busy_out / "samples.jsonl").write_text('{"index": 0}\n')
    return [
        ("not utf-8", [*model, "--data", str(files["latin1"]), *FAST], r"latin1\.jsonl:2: not UTF-8 \(byte 0xe9"),
        ("surrogate", [*model, "--data", str(files["surrogate"]), *FAST],
         r"surrogate\.jsonl:2: field 'question' holds a lone surrogate"),
        ("gold surrogate", [*model, "--data", str(files["gold_surrogate"]), *FAST],
         r"gold_surrogate\.jsonl:1: field 'answer' holds a lone surrogate"),
        ("deep json", [*model, "--data", str(files["deep"]), *FAST], r"deep\.jsonl:2: JSON nested too deeply"),
        ("k not int", [*ok, "--k", "1,x"],
         r"ScreenError: --k takes comma-separated positive integers like 1,4,16, got '1,x'"),
        ("k empty", [*ok, "--k", ","], r"--k takes comma-separated"),
        ("no model folder", ["--model", "/nonexistent/model", "--data", str(data), *FAST],
         r"model folder '/nonexistent/model' does not exist"),
        ("relative folder", ["--model", "./no/such/dir", "--data", str(data), *FAST], r"does not exist"),
        ("model is a file", ["--model", str(data), "--data", str(data), *FAST], r"is a file"),
        ("gguf missing", [*model, "--gguf", "x.gguf", "--data", str(data), *FAST], r"GGUF file 'x.gguf' is not in"),
        ("gamma", [*ok, "--gamma", "5"], r"gamma must lie in \[0, 1\]"),
        ("k-train", [*ok, "--k-train", "0"], r"K_train must be >= 1"),
        ("temperature inf", [*ok, "--temperature", "inf"], r"temperature must be finite"),
        ("temperature nan", [*ok, "--temperature", "nan"], r"temperature must be >= 0"),
        ("seed negative", [*ok, "--seed", "-1"], r"seed must lie in \[0, 2\*\*64\)"),
        ("seed huge", [*ok, "--seed", str(2**64)], r"seed must lie in \[0, 2\*\*64\)"),
        ("threads", [*ok, "--threads", "0"], r"--threads must be >= 1"),
        ("results need resume", [*ok, "--out", str(busy_out)], r"already holds results: pass --resume"),
        ("max new tokens", [*model, "--data", str(data), "--preset", "r1", "-n", "4", "--k", "1,4",
                            "--max-new-tokens", "1000000000", "--device", "cpu", "--no-progress"],
         r"max_new_tokens = 1000000000 leaves no room .* context of 96 tokens"),
    ]


def test_argument_errors_are_one_line_before_the_model_loads(tiny_dir, data, tmp_path, capsys, no_model_load):
    for name, args, pattern in _cases(tiny_dir, data, tmp_path):
        if "--out" not in args:
            args = [*args, "--out", str(tmp_path / f"out-{name.replace(' ', '-')}")]
        code, err, _ = _run(capsys, *args)
        assert code == 2, (name, err)
        _one_line(code, err, pattern)


def test_a_busy_folder_is_refused_before_the_model_loads(tiny_dir, data, tmp_path, capsys, no_model_load):
    from fastpass.screen.lock import LOCK_FILE

    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", "import time; from fastpass.screen.lock import acquire; "
                               f"acquire({str(out)!r}); print('held', flush=True); time.sleep(600)"],
                              cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        code, err, _ = _run(capsys, "--model", str(tiny_dir), "--data", str(data), "--out", str(out), *FAST)
        _one_line(code, err, rf"in use by another fastpass screen run \(pid {holder.pid}\)")
        assert (out / LOCK_FILE).read_text().split()[0] == str(holder.pid)
    finally:
        holder.kill()
        holder.wait()


def test_data_from_standard_input_is_read_once(tiny_dir, data, tmp_path):
    """`--data -` and `--data /dev/stdin` with piped data: read once, same counts as the file."""
    outs = {}
    for name, arg in (("file", str(data)), ("dash", "-"), ("devstdin", "/dev/stdin")):
        out = tmp_path / name
        env = dict(os.environ, OMP_NUM_THREADS="1")
        env.pop("FASTPASS_DEBUG", None)
        with open(data, "rb") as fh:
            proc = subprocess.run([sys.executable, "-m", "fastpass", "screen", "--model", str(tiny_dir), "--data", arg,
                                   "--out", str(out), *FAST], cwd=REPO, env=env, stdin=fh, capture_output=True,
                                  text=True, timeout=300)
        assert proc.returncode == 0, (name, proc.stderr[-2000:])
        outs[name] = [json.loads(line)["c"] for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(outs["file"]) == 3 and outs["dash"] == outs["file"] and outs["devstdin"] == outs["file"]
    report = json.loads((tmp_path / "dash" / "report.json").read_text())
    assert report["config"]["data"] == "standard input"


def test_every_screen_flag_has_help_text():
    from fastpass.cli import build_parser

    parser = build_parser()
    screen = next(a for a in parser._subparsers._group_actions[0].choices.items() if a[0] == "screen")[1]
    missing = [a.option_strings for a in screen._actions if a.option_strings and a.help in (None, "")]
    assert missing == []
    text = screen.format_help()
    for flag in ("--temperature", "--top-p", "--top-k", "--min-p", "--seed", "--question-field", "--answer-field"):
        assert re.search(re.escape(flag) + r"\s+\S+\s+\S", text), flag


def test_interrupt_message_says_what_is_saved(tiny_dir, data, tmp_path, capsys, monkeypatch):
    """Ctrl-C while the model loads: nothing saved, so no 'rerun with --resume'. After problems
    were saved: how many, where, and --resume."""
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(loading, "load_model", interrupted)
    out = tmp_path / "out"
    code, err, _ = _run(capsys, "--model", str(tiny_dir), "--data", str(data), "--out", str(out), *FAST)
    assert code == 130 and "--resume" not in err and "nothing saved yet" in err, err
    monkeypatch.undo()
    out.mkdir(exist_ok=True)
    (out / "samples.jsonl").write_text('{"index": 0}\n{"index": 1}\n')
    monkeypatch.setattr(loading, "load_model", interrupted)
    code, err, _ = _run(capsys, "--model", str(tiny_dir), "--data", str(data), "--out", str(out), "--resume", *FAST)
    assert code == 130 and "2 finished problems saved in" in err and "--resume" in err, err


# ---- fp.pass_at_k: counts and k that numpy would wrap or refuse with its own message (item 18) ----
@pytest.mark.parametrize("n, c, k, pattern", [
    (1e19, 3, 2, r"n\[0\] = 1e\+19 is too large"),
    (np.array([2**64 - 1], dtype=np.uint64), [3], 2, r"n\[0\] = 18446744073709551615 is too large"),
    (10, np.array([2**63], dtype=np.uint64), 2, r"c\[0\] = 9223372036854775808 is too large"),
    (10, 3, 1e20, r"k = 1e\+20 is too large"),
    (10, 3, float("nan"), r"k must be an integer, got nan"),
    (10, 3, float("inf"), r"k must be an integer, got inf"),
    (10, 3, 2.5, r"k must be an integer, got 2.5"),
    (10, 3, "2", r"k must be an integer, got '2'"),
    (10, float("nan"), 2, r"c\[0\] = nan is not an integer count"),
    (10, "3", 2, r"c must hold integer counts"),
])
def test_pass_at_k_refuses_out_of_range_numbers_with_one_clear_line(n, c, k, pattern):
    with pytest.raises((ValueError, TypeError), match=pattern) as info:
        fp.pass_at_k(n, c, k)
    assert len(str(info.value).splitlines()) == 1


def test_pass_at_k_still_takes_large_exact_counts():
    assert fp.pass_at_k(np.array([2**40], dtype=np.uint64), [2**39], 1)[0] == pytest.approx(0.5)
    assert fp.pass_at_k(10, 3, np.int64(2)) == pytest.approx(1 - (7 * 6) / (10 * 9))
    assert fp.pass_at_k(10.0, 3.0, 2.0) == pytest.approx(1 - (7 * 6) / (10 * 9))
    curve = fp.pass_at_k_curve([10, 10], [3, 0], ks=[np.uint8(1), 2.0])
    assert curve.ks.tolist() == [1, 2]
