"""fp.screen / `fastpass screen` end to end on a tiny model with a tokenizer built here (no hub):
counts against an independent grader, report numbers against fp.pass_at_k_curve / fp.verdict,
resume after SIGINT and SIGKILL, and every user error of SPEC §5 as one line with exit code 2."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import fastpass as fp
from fastpass.cli import main as cli_main
from fastpass.screen import ScreenError, ScreenReport, screen
from fastpass.screen.loading import load_model
from fastpass.screen.store import SampleStore

REPO = Path(__file__).resolve().parents[1]
DIGITS = [str(d) for d in range(10)]
WORDS = ["Q:", "A:", "What", "is", "+", "?", "<answer>", "</answer>", "the", "sum"] + DIGITS
TEMPLATE = "Q: {question} A:"


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<pad>", "<eos>", "<unk>"] + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>", unk_token="<unk>")


def _question(a: int, b: int) -> str:
    return f"What is {a} + {b} ?"


def _train_text(a: int, b: int) -> str:
    return f"Q: {_question(a, b)} A: <answer> {(a + b) % 10} </answer> <eos>"


def _tiny_model(tok, max_positions: int = 96):
    """A 2-layer Llama, briefly fitted to the answer format so its pass rates lie inside (0, 1)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max_positions,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None,
                      tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    pairs = [(a, b) for a in range(5) for b in range(5)]
    batch = torch.tensor([tok(_train_text(a, b), add_special_tokens=False)["input_ids"] for a, b in pairs])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(60):
        loss = model(input_ids=batch, labels=batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # The build machines are shared: two spinning threads per op are ~10x slower than one there.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny():
    tok = _tokenizer()
    return _tiny_model(tok), tok


@pytest.fixture(scope="module")
def tiny_dir(tiny, tmp_path_factory):
    model, tok = tiny
    d = tmp_path_factory.mktemp("tiny-model")
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return d


def _write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _rows(count: int):
    return [{"id": f"p{i}", "question": _question(i % 5, (3 * i) % 5), "answer": str((i % 5 + (3 * i) % 5) % 10)}
            for i in range(count)]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    return _write_jsonl(tmp_path_factory.mktemp("data") / "sums.jsonl", _rows(6))


# ---- end to end -------------------------------------------------------------------------------
def test_screen_end_to_end_counts_and_outputs(tiny, data_file, tmp_path):
    model, tok = tiny
    out = tmp_path / "out"
    rep = screen(model, tok, str(data_file), n_samples=16, ks=(1, 4, 16), template=TEMPLATE, max_new_tokens=8,
                 seed=3, out_dir=out, progress=False, preset="r1", save_completions=True)
    for name in ("samples.jsonl", "report.json", "report.md", "passk.png"):
        assert (out / name).stat().st_size > 0, name
    lines = [json.loads(l) for l in (out / "samples.jsonl").read_text().splitlines()]
    lines.sort(key=lambda l: l["index"])  # written as each problem finishes (continuous decoding)
    assert [l["id"] for l in lines] == [f"p{i}" for i in range(6)]
    golds = [r["answer"] for r in _rows(6)]
    for line, gold in zip(lines, golds):
        # independent grader: Python's re on the decoded text, the seed's rule
        want = [bool(m) and m.group(1).strip() == gold
                for m in (re.search(r"<answer>(.*?)</answer>", t, re.DOTALL) for t in line["completions"])]
        assert line["correct"] == [int(w) for w in want]
        assert line["c"] == sum(want) and line["n"] == 16
        assert len(line["lengths"]) == 16 and set(line["finish_reasons"]) <= {"eos", "length", "stop"}
        assert all(1 <= n <= 8 for n in line["lengths"])
    c = np.array([l["c"] for l in lines])
    assert c.sum() > 0 and (c < 16).any(), c  # the fitted model is right sometimes, not always
    assert rep.c.tolist() == c.tolist()
    report = json.loads((out / "report.json").read_text())
    curve = fp.pass_at_k_curve(np.full(6, 16), c, ks=[1, 4, 16], ci="bootstrap")
    assert [row["pass@k"] for row in report["curve"]] == pytest.approx(curve.values.tolist(), abs=1e-12)
    assert [row["lo"] for row in report["curve"]] == pytest.approx(curve.lo.tolist(), abs=1e-12)
    assert report["verdict"] == json.loads(json.dumps(fp.verdict(curve, K_train=64).to_dict()))  # the gap at K_train
    assert report["throughput"]["samples"] == 96 and report["throughput"]["tokens"] == sum(
        sum(l["lengths"]) for l in lines)
    assert report["config"]["n"] == 16 and report["config"]["rule"]["pattern"] == r"<answer>(.*?)</answer>"
    md = (out / "report.md").read_text()
    assert f"**{rep.verdict.decision}**" in md and f"{curve.values[0]:.3f}" in md


def test_sample_independent_of_batching_and_resume(tiny, data_file, tmp_path):
    """Stream id = problem index: 3 decode rows give the counts of 64 rows (every problem at once),
    and a run resumed from a partial samples.jsonl gives the counts of an uninterrupted one."""
    model, tok = tiny
    kw = dict(n_samples=8, ks=(1, 8), template=TEMPLATE, max_new_tokens=8, seed=1, progress=False, preset="r1")
    whole = screen(model, tok, str(data_file), out_dir=tmp_path / "a", max_rows=64, **kw)
    one_by_one = screen(model, tok, str(data_file), out_dir=tmp_path / "b", max_rows=3, **kw)
    assert one_by_one.c.tolist() == whole.c.tolist()
    lines = (tmp_path / "b" / "samples.jsonl").read_text().splitlines(keepends=True)
    partial = tmp_path / "c"
    partial.mkdir()
    (partial / "samples.jsonl").write_text("".join(lines[:2]) + lines[2][:17])  # torn last line
    resumed = screen(model, tok, str(data_file), out_dir=partial, resume=True, **kw)
    assert resumed.c.tolist() == whole.c.tolist()
    assert resumed.throughput["problems_resumed"] == 2 and resumed.throughput["problems_sampled"] == 4
    assert len((partial / "samples.jsonl").read_text().splitlines()) == 6
    with pytest.raises(ScreenError, match="other settings"):
        screen(model, tok, str(data_file), out_dir=partial, resume=True, **dict(kw, seed=2))
    with pytest.raises(ScreenError, match="--resume"):
        screen(model, tok, str(data_file), out_dir=partial, resume=False, **kw)


def test_report_numbers_match_library():
    rng = np.random.default_rng(0)
    n = np.full(40, 32)
    c = rng.binomial(32, rng.beta(0.6, 2.2, size=40))
    rep = ScreenReport.from_counts([f"q{i}" for i in range(40)], n, c, ks=[1, 4, 16, 32], gamma=0.7, K_train=64)
    curve = fp.pass_at_k_curve(n, c, ks=[1, 4, 16, 32], ci="bootstrap")
    np.testing.assert_allclose(rep.curve.values, curve.values, rtol=0, atol=1e-15)
    np.testing.assert_allclose(rep.curve.lo, curve.lo, atol=1e-15)
    np.testing.assert_allclose(rep.curve.hi, curve.hi, atol=1e-15)
    assert rep.verdict.to_dict() == fp.verdict(curve, K_train=64).to_dict()
    for k in (1, 4, 16, 32):
        assert rep.gaps[k] == pytest.approx(fp.elicitation_gap(curve, k), abs=1e-15)
    pred = fp.predict_post_rl(c / n, K_train=64, gamma=0.7)
    post = rep.post_rl_pass1()
    assert post["value"] == pytest.approx(np.mean(pred.value)) and post["low"] == pytest.approx(np.mean(pred.low))
    assert post["value"] == pytest.approx(rep.verdict.expected_pass1, abs=1e-12)  # one after-RL model
    # after-RL curve: at k = 1 it is the predicted pass@1; the seed's model mean 1 - (1 - p')^k
    assert rep.after_rl["gamma"][0] == pytest.approx(post["value"])
    want16 = np.mean(1 - (1 - pred.value) ** 16)
    assert rep.after_rl["gamma"][15] == pytest.approx(want16, abs=1e-12)
    assert np.all(rep.after_rl["low"] <= rep.after_rl["high"] + 1e-15)
    # full curve (for the plot) agrees with the reported one where both exist
    np.testing.assert_allclose(rep.full_curve.values[[0, 3, 15, 31]], curve.values, atol=1e-15)
    d = rep.to_dict()
    assert d["per_problem"][3] == {"id": "q3", "n": 32, "c": int(c[3])}
    assert json.loads(json.dumps(d))["curve"][0]["k"] == 1


def test_store_drops_torn_tail_and_appends_whole_lines(tmp_path):
    store = SampleStore(str(tmp_path), "fp1", resume=True)
    store.append({"index": 0, "id": "a", "n": 2, "c": 1})
    store.close()
    with open(tmp_path / "samples.jsonl", "a") as fh:
        fh.write('{"index": 1, "id": "b", "n"')
    again = SampleStore(str(tmp_path), "fp1", resume=True)
    assert sorted(again.done) == [0]
    assert (tmp_path / "samples.jsonl").read_text().endswith("}\n")


# ---- CLI: resume after a kill -------------------------------------------------------------------
def _cli(args, cwd, env=None):
    return subprocess.Popen([sys.executable, "-m", "fastpass", "screen", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1", **(env or {})))


def _wait_lines(path: Path, proc, count: int, timeout: float = 120.0) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if path.exists() and path.read_text().count("\n") >= count:
            return
        if proc.poll() is not None:
            raise AssertionError(f"run ended early: {proc.communicate()}")
        time.sleep(0.01)
    raise AssertionError("no progress in samples.jsonl")


@pytest.mark.slow
def test_cli_resume_after_sigint_and_sigkill_gives_same_counts(tiny_dir, tmp_path):
    total = 40
    data = _write_jsonl(tmp_path / "p.jsonl", _rows(total))
    out = tmp_path / "out"
    args = ["--model", str(tiny_dir), "--data", str(data), "--preset", "r1", "-n", "64", "--k", "1,8,64",
            "--max-new-tokens", "8", "--seed", "5", "--out", str(out), "--no-progress", "--device", "cpu"]
    samples = out / "samples.jsonl"
    proc = _cli(args, REPO)
    _wait_lines(samples, proc, 2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "--resume" in err, err
    proc = _cli(args + ["--resume"], REPO)
    _wait_lines(samples, proc, len(samples.read_text().splitlines()) + 2)
    proc.kill()
    proc.wait()
    done = samples.read_text()
    assert done.endswith("\n") and 2 <= done.count("\n") < total
    proc = _cli(args + ["--resume"], REPO)
    stdout, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    rows = [json.loads(l) for l in samples.read_text().splitlines()]
    assert sorted(r["index"] for r in rows) == list(range(total))  # nothing lost, nothing twice
    model, tok, _ = load_model(str(tiny_dir), device="cpu")
    whole = screen(model, tok, str(data), n_samples=64, ks=(1, 8, 64), max_new_tokens=8, seed=5, preset="r1",
                   progress=False)
    got = {r["index"]: r["c"] for r in rows}
    assert [got[i] for i in range(total)] == whole.c.tolist()
    report = json.loads((out / "report.json").read_text())
    assert [p["c"] for p in report["per_problem"]] == whole.c.tolist()
    assert report["verdict"]["decision"] in stdout
    # an INCONCLUSIVE verdict says why on the terminal too, with the report's own reasons
    reasons = report["verdict"]["uncertainty"]["reasons"]
    assert ("  why: " + "; ".join(reasons) in stdout) == (report["verdict"]["decision"] == "INCONCLUSIVE")


# ---- CLI: errors are one line, exit code 2 ------------------------------------------------------
def _run_cli(capsys, *args):
    code = cli_main(["screen", *args, "--no-progress"])
    err = capsys.readouterr().err.strip()
    return code, err


def _error_cases(tmp_path, tiny_dir, data_file):
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"question": "What is 1 + 1 ?", "answer": "2"}\n{"question": oops}\n')
    missing = _write_jsonl(tmp_path / "missing.jsonl", [{"question": "What is 1 + 1 ?", "answer": "2"},
                                                        {"question": "What is 2 + 2 ?"}])
    no_fields = _write_jsonl(tmp_path / "nofields.jsonl", [{"q": "x", "a": "1"}])
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    long_q = _write_jsonl(tmp_path / "long.jsonl", [{"question": " ".join(["What is 1 + 1 ?"] * 30), "answer": "2"}])
    model = ["--model", str(tiny_dir), "--device", "cpu"]
    data = ["--data", str(data_file), "--preset", "r1"]
    return [
        ("malformed", [*model, "--data", str(bad_json)], r"bad\.jsonl:2: malformed JSON"),
        ("missing field", [*model, "--data", str(missing)], r"missing\.jsonl:2: missing field 'answer'"),
        ("no such field", [*model, "--data", str(no_fields)], r"no question field .*--question-field"),
        ("named field absent", [*model, "--data", str(data_file), "--answer-field", "gold"],
         r"missing field 'gold'"),
        ("empty", [*model, "--data", str(empty)], r"no problems \(empty file\)"),
        ("no file", [*model, "--data", str(tmp_path / "nope.jsonl")], r"does not exist"),
        ("k > n", [*model, *data, "-n", "4", "--k", "1,8"], r"k = 8 exceeds n = 4"),
        ("temperature", [*model, *data, "--temperature", "-1"], r"temperature must be >= 0"),
        ("top-p", [*model, *data, "--top-p", "1.5"], r"top_p must lie in \(0, 1\]"),
        ("top-p zero", [*model, *data, "--top-p", "0"], r"top_p must lie in \(0, 1\]"),
        ("unsupported regex", [*model, *data, "--pattern", r"<answer>(.*?)</answer>(?=\s)"], r"lookahead"),
        ("backreference", [*model, *data, "--pattern", r"(a)\1"], r"backreference"),
        ("invalid regex", [*model, *data, "--pattern", r"(unclosed"], r"not a valid regex"),
        ("context", [*model, "--data", str(long_q), "--preset", "r1", "--max-new-tokens", "8"],
         r"exceeds the model's context \(96\)"),
        ("no model folder", ["--model", str(tmp_path / "no-such-model"), *data], r"model folder .* does not exist"),
        ("offline model", ["--model", str(tmp_path), *data], r"cannot load .* offline"),
        ("offline hub id", ["--model", "fastpass-test/definitely-not-cached-xyz", *data], r"offline"),
        ("limit", [*model, "--data", str(data_file), "--limit", "0"], r"limit must be a positive"),
    ]


def test_cli_errors_are_one_line(tiny_dir, data_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("FASTPASS_DEBUG", raising=False)
    for name, args, pattern in _error_cases(tmp_path, tiny_dir, data_file):
        code, err = _run_cli(capsys, *args, "--out", str(tmp_path / f"out-{name.replace(' ', '-')}"))
        assert code == 2, (name, err)
        assert len(err.splitlines()) == 1 and "Traceback" not in err, (name, err)
        assert re.search(pattern, err), (name, err)


def test_cli_existing_output_needs_resume(tiny_dir, data_file, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--model", str(tiny_dir), "--device", "cpu", "--data", str(data_file), "--preset", "r1", "-n", "2",
            "--k", "1,2", "--max-new-tokens", "4", "--limit", "2", "--out", str(out)]
    code, err = _run_cli(capsys, *args)
    assert code == 0, err
    code, err = _run_cli(capsys, *args)
    assert code == 2 and "--resume" in err
    assert _run_cli(capsys, *args, "--resume")[0] == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cli_device_cuda_without_gpu(data_file, capsys):
    code, err = _run_cli(capsys, "--data", str(data_file), "--device", "cuda")
    assert code == 2 and "no CUDA GPU" in err and len(err.splitlines()) == 1


def test_no_eos_and_vocab_mismatch(tiny, data_file):
    model, tok = tiny
    bare = _tokenizer()
    bare.eos_token = None
    saved = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = None
    model.config.eos_token_id = None
    try:
        with pytest.raises(ScreenError, match="no EOS token"):
            screen(model, bare, str(data_file), n_samples=2, ks=(1,), preset="r1", progress=False,
                   template=TEMPLATE, max_new_tokens=8)
    finally:
        model.generation_config.eos_token_id = saved
        model.config.eos_token_id = saved
    big = _tokenizer()
    big.add_tokens([f"extra{i}" for i in range(50)])
    with pytest.raises(ValueError, match="tokenizer"):
        screen(model, big, str(data_file), n_samples=2, ks=(1,), preset="r1", progress=False, template=TEMPLATE,
               max_new_tokens=8)


def test_api_argument_errors(tiny, data_file):
    model, tok = tiny
    for kw, msg in [(dict(n_samples=0), "n must be >= 1"), (dict(n_samples=4, ks=(1, 5)), "exceeds n"),
                    (dict(temperature=-0.5), "temperature"), (dict(top_p=0.0), "top_p"),
                    (dict(preset="nope"), "unknown preset"), (dict(template="no placeholder"), "{question}")]:
        with pytest.raises(ScreenError, match=re.escape(msg)):
            screen(model, tok, str(data_file), progress=False, **{"preset": "r1", **kw})
    with pytest.raises(ScreenError, match="problems is empty"):
        screen(model, tok, [], progress=False)


def test_cuda_oom_halves_the_rows_and_keeps_counts(tiny, data_file, monkeypatch, tmp_path):
    """Decoding that runs out of memory mid-run is retried with half the rows, redrawing only the
    samples not finished yet; the keyed randomness makes the counts identical to a run that never
    hit OOM, and the problems finished before it are already in samples.jsonl."""
    from fastpass.engine.scheduler import ContinuousDecoder

    model, tok = tiny
    kw = dict(n_samples=8, ks=(1, 8), template=TEMPLATE, max_new_tokens=6, seed=4, progress=False, preset="r1",
              max_rows=32)
    clean = screen(model, tok, str(data_file), **kw)
    real_step, calls = ContinuousDecoder._step, []

    def flaky(self, b):
        calls.append(self.rows)
        if self.rows > 8 and len(calls) > 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_step(self, b)

    monkeypatch.setattr(ContinuousDecoder, "_step", flaky)
    rep = screen(model, tok, str(data_file), out_dir=tmp_path, **kw)
    assert rep.c.tolist() == clean.c.tolist()
    assert rep.throughput["oom_retries"] == 2 and rep.throughput["problems_sampled"] == 6
    assert sorted(set(calls)) == [8, 16, 32]


def test_load_model_dtype_and_device_flags(tiny_dir):
    model, tok, name = load_model(str(tiny_dir), dtype="bfloat16", device="cpu", progress=False)
    assert next(model.parameters()).dtype == torch.bfloat16 and name == str(tiny_dir)
    with pytest.raises(ScreenError, match="unknown dtype"):
        load_model(str(tiny_dir), dtype="float8", device="cpu")
    with pytest.raises(ScreenError, match="unknown device"):
        load_model(str(tiny_dir), device="tpu")
    with pytest.raises(ScreenError, match="--gguf .* --model"):
        load_model(None, gguf="x.gguf", device="cpu")


@pytest.mark.gpu
def test_screen_on_gpu_grades_on_device_like_re(tiny, data_file, tmp_path):
    """On a GPU the samples are graded from token ids by the CUDA regex kernel: the verdicts must
    equal Python's re on the decoded completions, and the outputs must all be written."""
    model, tok = tiny
    gpu_model = _tiny_model(tok).to("cuda")
    rep = screen(gpu_model, tok, str(data_file), n_samples=32, ks=(1, 8, 32), template=TEMPLATE, max_new_tokens=8,
                 seed=3, out_dir=tmp_path, progress=False, preset="r1", save_completions=True)
    assert rep.config["device"].startswith("cuda")
    golds = [r["answer"] for r in _rows(6)]
    for line, gold in zip((json.loads(l) for l in (tmp_path / "samples.jsonl").read_text().splitlines()), golds):
        want = [bool(m) and m.group(1).strip() == gold
                for m in (re.search(r"<answer>(.*?)</answer>", t, re.DOTALL) for t in line["completions"])]
        assert line["correct"] == [int(w) for w in want]
    assert (tmp_path / "passk.png").stat().st_size > 0
    assert rep.c.sum() > 0
