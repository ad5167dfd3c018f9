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


def test_absent_optional_baselines_are_named(monkeypatch, tmp_path):
    import importlib.util

    cli_bench.load_bench("e2e")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("vllm", "flashinfer")
                        else real(name, *a))
    monkeypatch.setenv("VLLM_VENV", str(tmp_path / "no-venv"))
    (line,) = cli_bench.missing_baselines("e2e", [{"baseline_name": "HF generate"}])
    assert "no-venv does not exist" in line and "bash bench/vllm_env.sh" in line
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    (tmp_path / "venv" / "bin" / "python").symlink_to(sys.executable)
    monkeypatch.setenv("VLLM_VENV", str(tmp_path / "venv"))
    assert cli_bench.missing_baselines("e2e", []) == []  # the venv exists: the rows show vLLM
    assert cli_bench.missing_baselines("attention", [{"baseline_name": "FlashInfer cascade"}]) == []
    assert cli_bench.missing_baselines("passk", []) == []


FAKE_VLLM = """
import json, os
__version__ = "0.fake"
class SamplingParams:
    def __init__(self, **kw):
        self.kw = kw
class _C:
    def __init__(self, index, ids, reason):
        self.index, self.token_ids, self.finish_reason = index, ids, reason
class _O:
    def __init__(self, outputs):
        self.outputs = outputs
class LLM:
    def __init__(self, **kw):
        assert os.path.isfile(os.path.join(kw["model"], "config.json"))
        assert os.path.isfile(os.path.join(kw["model"], "model.safetensors"))
        self.kw = kw
    def generate(self, prompts, params, use_tqdm=True):
        kw = params.kw
        with open(os.environ["FAKE_VLLM_LOG"], "a") as fh:
            fh.write(json.dumps({"init": self.kw, "params": kw, "prompts": [p["prompt_token_ids"] for p in prompts]}) + "\\n")
        mode = os.environ.get("FAKE_VLLM_MODE", "ok")
        outs = []
        for p in prompts:
            comps = []
            for j in range(kw["n"]):
                n = kw["max_tokens"]
                if kw.get("stop_token_ids") and j % 2:
                    n = 1 + j % kw["max_tokens"]  # odd samples end early on an EOS id
                ids = [5] * n
                if n < kw["max_tokens"] and mode == "ok":
                    ids[-1] = kw["stop_token_ids"][0]
                comps.append(_C(j, ids, "stop" if n < kw["max_tokens"] else "length"))
            outs.append(_O(comps[::-1]))  # out of order: the runner sorts by index
        return outs
"""


@pytest.fixture
def fake_vllm_env(tmp_path, monkeypatch):
    """A venv stand-in whose python is this one, with a stand-in ``vllm`` package on its path."""
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    (tmp_path / "venv" / "bin" / "python").symlink_to(sys.executable)
    (tmp_path / "pkgs" / "vllm").mkdir(parents=True)
    (tmp_path / "pkgs" / "vllm" / "__init__.py").write_text(FAKE_VLLM)
    monkeypatch.setenv("VLLM_VENV", str(tmp_path / "venv"))
    monkeypatch.setenv("FAKE_VLLM_LOG", str(tmp_path / "calls.jsonl"))
    return {"PYTHONPATH": str(tmp_path / "pkgs")}, tmp_path / "calls.jsonl"


def test_vllm_runs_out_of_process_on_the_saved_weights_with_n_k_and_prefix_caching(fake_vllm_env, monkeypatch):
    import torch

    sys.path.insert(0, str(REPO))
    from bench import vllm_baseline
    from fastpass.engine.tiny_models import tiny_model

    env, log = fake_vllm_env
    model = tiny_model("llama")
    ids = torch.randint(1, 111, (3, 9)).tolist()
    with vllm_baseline.ModelFolder(model) as folder:
        cfg = json.loads((Path(folder.dir) / "config.json").read_text())
        assert cfg["architectures"] == ["LlamaForCausalLM"] and "quantization_config" not in cfg
        off = vllm_baseline.generate(folder, ids, n=4, max_tokens=5, env=env)  # EOS off
        on = vllm_baseline.generate(folder, ids, n=4, max_tokens=5, eos_ids=[7, 8], env=env)
        monkeypatch.setenv("FAKE_VLLM_MODE", "no-eos")
        bad = vllm_baseline.generate(folder, ids, n=4, max_tokens=5, eos_ids=[7], env=env)
    assert not Path(folder.dir).exists(), "the saved model folder is removed"
    assert off.tokens_per_s, off.note
    assert off.tokens_per_s > 0 and off.tokens == 3 * 4 * 5 and "0.fake" in off.note and "prefix caching on" in off.note
    assert off.lengths.shape == (3, 4) and (off.lengths == 5).all()
    assert on.tokens_per_s > 0 and on.lengths.tolist() == [[5, 2, 5, 4]] * 3 and on.tokens == on.lengths.sum()
    assert bad.tokens_per_s is None and "end early without an EOS id" in bad.note
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    timed = [c for c in calls if c["params"]["n"] == 4]
    init, p_off, p_on = timed[0]["init"], timed[0]["params"], timed[1]["params"]
    assert init["enable_prefix_caching"] and init["skip_tokenizer_init"] and init["dtype"] == "float32"
    assert timed[0]["prompts"] == ids
    assert p_off["ignore_eos"] and p_off["max_tokens"] == p_off["min_tokens"] == 5 and "stop_token_ids" not in p_off
    assert not p_on["ignore_eos"] and p_on["min_tokens"] == 0 and p_on["stop_token_ids"] == [7, 8]
    assert p_on["temperature"] == 1.0 and p_on["top_p"] == 1.0 and "top_k" not in p_on  # top_k 0: all tokens


def test_vllm_failures_become_notes(fake_vllm_env, monkeypatch, tmp_path):
    sys.path.insert(0, str(REPO))
    from bench import vllm_baseline
    from fastpass.engine.tiny_models import tiny_model

    env, _ = fake_vllm_env
    broken = tmp_path / "broken"
    (broken / "vllm").mkdir(parents=True)
    (broken / "vllm" / "__init__.py").write_text("class LLM:\n    def __init__(self, **kw):\n"
                                                  "        raise RuntimeError('no memory left')\n")
    r = vllm_baseline.for_model(tiny_model("llama"), [[1, 2, 3]], 2, 3, env={"PYTHONPATH": str(broken)})
    assert r.tokens_per_s is None and r.note.startswith("vLLM failed: RuntimeError: no memory left")
    monkeypatch.setenv("VLLM_VENV", str(tmp_path / "absent"))
    r = vllm_baseline.for_model(tiny_model("llama"), [[1, 2, 3]], 2, 3)
    assert r.tokens_per_s is None and "bash bench/vllm_env.sh" in r.note


def _bench(name):
    sys.path.insert(0, str(REPO))
    return __import__(f"bench.{name}", fromlist=["_"])


def test_roofline_reads_each_live_prompt_once_and_each_live_suffix():
    from fastpass.engine.tiny_models import tiny_model

    roof = _bench("e2e_roofline")
    model = tiny_model("llama")  # 2 layers, 2 kv heads of 16, fp32: 512 bytes of KV per token
    params = sum(p.numel() for p in model.parameters())
    bw, peak = 1e9, 1e30  # bandwidth-bound
    lengths = [[2, 1], [1, 1]]  # prompt 0: samples of 2 and 1 tokens; prompt 1: 1 and 1
    got = roof.roofline_tokens_per_s(model, [10, 4], lengths, bw, peak)
    step0 = params * 4 + (10 + 4) * 512 + 4 * 0 * 512   # both prompts live, suffixes empty
    step1 = params * 4 + 10 * 512 + 1 * 1 * 512         # only prompt 0's first sample is left
    want = 5 / ((step0 + step1) / bw + 2 * params * 14 / peak)
    assert got == pytest.approx(want, rel=1e-12)
    bw, peak = 1e30, 1e9  # compute-bound: prefill once per prompt + 2*params per live row per step
    got = roof.roofline_tokens_per_s(model, [10, 4], lengths, bw, peak)
    assert got == pytest.approx(5 / (2 * params * (14 + 4 + 1) / peak), rel=1e-12)


def test_lengths_until_eos_counts_the_eos_and_whole_rows_without_one():
    import torch

    p7 = _bench("e2e_p7")
    gen = torch.tensor([[5, 7, 9, 0], [5, 5, 5, 5], [9, 1, 1, 1]])
    assert p7.lengths_until_eos(gen, [9, 7]).tolist() == [2, 4, 1]


def test_length_tests_hold_their_level_and_see_a_shift():
    """Over 200 pairs of geometric samples (discrete, tied, like sample lengths): from one
    distribution each test rejects at 5% in at most ~10% of pairs (ties make KS conservative);
    with the mean doubled (40 to 80) both reject in at least 95%."""
    import numpy as np

    p7 = _bench("e2e_p7")
    rng = np.random.default_rng(0)
    same = [p7.compare_lengths(rng.geometric(1 / 40, 256), rng.geometric(1 / 40, 256)) for _ in range(200)]
    moved = [p7.compare_lengths(rng.geometric(1 / 40, 256), rng.geometric(1 / 80, 256)) for _ in range(200)]
    for key in ("ks_p", "mw_p"):
        assert np.mean([t[key] < 0.05 for t in same]) <= 0.10, key   # binomial(200, 0.05) passes this w.p. > 0.99
        assert np.mean([t[key] < 0.05 for t in moved]) >= 0.95, key


def test_p7_sides_sample_the_same_length_distribution_on_a_tiny_model():
    """fastpass and HF generate (top_k=0, top_p=1, T=1) draw from one distribution: the lengths of
    64 samples per side must pass the two-sample tests (fixed seeds: deterministic)."""
    import torch

    import fastpass as fp
    from fastpass.engine.tiny_models import tiny_model

    p7 = _bench("e2e_p7")
    model = tiny_model("qwen2", seed=7)
    prompts = [[3, 4, 5, 6], [7, 8], [9, 10, 11], [12]]
    probe = fp.Sampler(model).sample(prompts, n=16, max_new_tokens=24, seed=5)
    counts = torch.bincount(torch.tensor([t for row in probe.tokens for s in row for t in s]), minlength=111)
    eos = torch.argsort(counts, descending=True)[:3].tolist()  # common tokens: lengths of a few steps
    fast = p7.run_fastpass(model, None, prompts, 16, 24, eos, seed=1)
    torch.manual_seed(1)
    hf = p7.run_hf(model, prompts, 16, 24, eos, pad_id=0)
    assert fast.lengths.shape == hf.lengths.shape == (4, 16)
    assert 1.5 < fast.lengths.mean() < 20 and (fast.lengths < 24).mean() > 0.5
    t = p7.compare_lengths(fast.lengths, hf.lengths)
    assert t["ks_p"] > 0.01 and t["mw_p"] > 0.01, t
    rows = p7.rows_for("P7 tiny", fast, [hf], "[idle]")
    assert rows[0]["ratio"] == pytest.approx(fast.tokens_per_s / hf.tokens_per_s)
    assert "KS D=" in rows[0]["note"] and "Mann-Whitney p=" in rows[0]["note"]
    assert rows[0]["roofline_frac"] is None and "roofline" not in rows[0]["note"]
    rows = p7.rows_for("P7 tiny", fast, [hf], "[idle]", (4 * fast.tokens_per_s, "measured now"))
    assert rows[0]["roofline_frac"] == pytest.approx(0.25)
    assert "roofline" in rows[0]["note"] and "measured now" in rows[0]["note"]


def test_p1_cases_run_on_cpu_with_a_tiny_model():
    """The GPU e2e path (P1a fixed length, P1c long-tailed with a V/L EOS set) end to end on CPU."""
    from fastpass.engine.tiny_models import tiny_model

    e2e = _bench("bench_e2e")
    model = tiny_model("qwen2", seed=2)
    rows = e2e.p1_rows(model, ["P1a", "P1c"], "cpu", reps=1, sizes={"P1a": (2, 8, 4, 6), "P1c": (2, 8, 8, 40)})
    a, c = rows
    assert a["case"].startswith("P1a") and a["fastpass"] > 0 and a["baseline"] > 0 and 0 < a["roofline_frac"] < 1
    assert "measured now" in a["note"]
    assert c["case"].startswith("P1c") and "EOS ids" in c["case"] and c["fastpass"] > 0 and c["baseline"] > 0
    assert 0 < c["roofline_frac"] < 1 and "KS p=" in c["note"] and "length mean" in c["note"]


def test_slowdown_rows_compare_what_each_side_loses_under_load():
    e2e = _bench("bench_e2e")
    rows = e2e._slowdown_rows("P6", {"idle": {"fastpass": 100.0, "HF generate": 50.0, "vLLM": None},
                                     "matmul": {"fastpass": 50.0, "HF generate": 40.0, "vLLM": 30.0}})
    (row,) = rows  # vLLM has no idle number: no row for it
    assert row["fastpass"] == 2.0 and row["baseline"] == 1.25 and row["ratio"] == 0.625
    assert e2e._slowdown_rows("P6", {"idle": {"fastpass": 1.0}}) == []


def test_slowdown_rows_for_each_fastpass_side():
    e2e = _bench("bench_e2e")
    one = e2e.fastpass_label(1)
    rows = e2e._slowdown_rows("P7", {"idle": {"fastpass": 300.0, one: 180.0, "vLLM": 150.0},
                                     "matmul": {"fastpass": 170.0, one: 176.0, "vLLM": 135.0}})
    by_case = {r["case"]: r for r in rows}
    assert set(by_case) == {"P7: slowdown under load", "P7: slowdown under load, fastpass on 1 thread"}
    assert by_case["P7: slowdown under load"]["fastpass"] == pytest.approx(300 / 170)
    capped = by_case["P7: slowdown under load, fastpass on 1 thread"]
    assert capped["fastpass"] == pytest.approx(180 / 176) and capped["baseline"] == pytest.approx(150 / 135)
    assert capped["ratio"] == pytest.approx((150 / 135) / (180 / 176))


def test_thread_caps_parse_and_cap_the_engine():
    import torch

    from fastpass.engine.tiny_models import tiny_model

    e2e = _bench("bench_e2e")
    assert e2e.parse_thread_caps(None) == (None,)
    assert e2e.parse_thread_caps("auto, 1,1") == (None, 1)
    for bad in ("0", "one", "auto,-1"):
        with pytest.raises(ValueError, match="auto and/or positive counts"):
            e2e.parse_thread_caps(bad)
    model, before = tiny_model("llama", seed=1), torch.get_num_threads()
    side = e2e._run_fastpass_capped(1, model, None, [[3, 4, 5], [6, 7]], 2, 6, [0])
    assert side.name == "fastpass on 1 thread" and "decode threads 1" in side.note
    assert side.lengths.shape == (2, 2) and torch.get_num_threads() == before


def test_background_load_runs_and_stops_its_process():
    import time

    load = _bench("_load")
    with load.background_load("matmul", settle_s=0.2) as info:
        time.sleep(0.5)
    assert info["matmuls"] > 0 and info["seconds"] > 0.5
    with load.background_load("idle") as info:
        pass
    assert info == {"kind": "idle"}
    with pytest.raises(ValueError, match="choose one of idle, matmul"):
        with load.background_load("spin"):
            pass


def test_e2e_options_reach_the_bench_and_are_refused_elsewhere(monkeypatch, tmp_path, capsys):
    mod = cli_bench.load_bench("e2e")
    seen = {}

    def fake_run(quick=False, device="cpu", **kw):
        seen.update(kw, quick=quick)
        return [{"bench": "e2e", "case": "stub", "fastpass": 1.0, "unit": "tok/s"}]

    monkeypatch.setattr(mod, "run", fake_run)
    monkeypatch.setenv("VLLM_VENV", str(tmp_path / "none"))
    assert cli.main(["bench", "e2e", "--quick", "--cases", "P7", "--load", "idle,matmul", "--problems", "4",
                     "--csv", str(tmp_path / "r.csv")]) == 0
    assert seen == {"cases": ["P7"], "loads": ["idle", "matmul"], "problems": 4, "baselines": None,
                    "fastpass_threads": None, "quick": True}
    out = capsys.readouterr().out
    assert "bash bench/vllm_env.sh" in out  # no venv: the command says how to create it
    assert cli.main(["bench", "e2e", "--cases", "P7", "--baselines", "vllm", "--csv", str(tmp_path / "r.csv")]) == 0
    assert seen["baselines"] == ["vllm"]
    assert cli.main(["bench", "e2e", "--baselines", "vllm,sglang"]) == 2
    assert "--baselines takes vllm and/or hf" in capsys.readouterr().err
    assert cli.main(["bench", "e2e", "--fastpass-threads", "auto,1", "--csv", str(tmp_path / "r.csv")]) == 0
    assert seen["fastpass_threads"] == "auto,1"
    assert cli.main(["bench", "e2e", "--fastpass-threads", "auto,two"]) == 2
    assert "--fastpass-threads takes auto and/or positive counts" in capsys.readouterr().err
    assert cli.main(["bench", "passk", "--fastpass-threads", "1"]) == 2
    assert "apply to `fastpass bench e2e` only" in capsys.readouterr().err
    assert cli.main(["bench", "passk", "--cases", "P6"]) == 2
    assert "apply to `fastpass bench e2e` only" in capsys.readouterr().err
