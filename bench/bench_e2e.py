"""End-to-end sampling throughput: fastpass ``Sampler`` vs HF ``generate(num_return_sequences=K)``
and vLLM (out of process, ``bench/vllm_env.sh``), each pair measured in the same run.

CPU: P6 (SmolLM2-135M shape, random init, prompt 256, K=16, 32 new tokens, EOS off) and P7 (a real
long-tailed gsm8k job, bench/e2e_p7.py); each idle and under a fixed background load (``--load``,
bench/_load.py), with the slowdown of each side. GPU: P1a / P1b (Qwen2.5-1.5B shape, random init,
bf16, EOS off) and P1c (P1a's shape, a random set of V/L token ids treated as EOS: geometric lengths
with mean L, the same set for fastpass and HF). Rooflines use the bandwidth and FLOP/s measured on
the device in the same run: t_step >= max(bytes/BW, 2*params*B/peak), bytes = weights + each live
prompt's KV once + each live suffix's KV."""
from __future__ import annotations

import os
import time

import numpy as np
import torch

from bench import e2e_p7, vllm_baseline
from bench._common import Rows, bench_parser, run_and_report, sync, time_left
from bench._load import background_load, describe as load_name
from bench.e2e_roofline import measure_ceilings, roofline_tokens_per_s
from fastpass.engine.cpu_threads import restored_threads

CPU_CASES, GPU_CASES = ("P6", "P7"), ("P1a", "P1b", "P1c")
P1 = {"P1a": (8, 512, 128, 512), "P1b": (1, 4096, 128, 256), "P1c": (8, 512, 128, 512)}
P1_QUICK = {"P1a": (8, 512, 128, 64), "P1b": (1, 4096, 128, 32), "P1c": (8, 512, 128, 128)}
P1C_MEAN = {False: 128, True: 32}  # L: mean sample length of P1c (quick: shorter)


def smollm2_135m_config():
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                       num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                       rope_theta=100000.0, tie_word_embeddings=True, rms_norm_eps=1e-5)


def qwen25_15b_config():
    from transformers import Qwen2Config

    return Qwen2Config(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                       num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=32768,
                       rope_theta=1000000.0, tie_word_embeddings=True, rms_norm_eps=1e-6)


def build(config, device, dtype):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.eval()
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    return model


def _time_once(fn, device):
    """(wall seconds, process CPU seconds, result)."""
    sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, time.process_time() - c0, out


def prompt_ids(model, num_prompts, prompt_len):
    g = torch.Generator().manual_seed(1)
    return torch.randint(1, model.config.vocab_size, (num_prompts, prompt_len), generator=g)


def run_case(model, num_prompts, prompt_len, k, new_tokens, device, hf_new_tokens=None, reps=1, hf_reps=None,
             **sampler_kw):
    """Fixed-length case (EOS off). Returns (fastpass tok/s, HF tok/s, stats). When HF runs fewer new
    tokens than fastpass (GPU), its time for ``new_tokens`` is extrapolated linearly from runs with 1
    and ``hf_new_tokens`` new tokens; HF's per-step cost grows with its cache, so this favours HF."""
    import fastpass as fp

    ids = prompt_ids(model, num_prompts, prompt_len)
    sampler = fp.Sampler(model, **sampler_kw)
    run = lambda: sampler.sample(ids.tolist(), n=k, max_new_tokens=new_tokens, temperature=1.0, seed=0)
    _time_once(lambda: fp.Sampler(model, **sampler_kw).sample(ids[:1, :8].tolist(), n=2, max_new_tokens=4),
               device)  # warm-up: kernels compiled, allocator settled
    dev_ids = ids.to(device)

    def hf(new):
        out = model.generate(dev_ids, attention_mask=torch.ones_like(dev_ids), do_sample=True,
                             num_return_sequences=k, max_new_tokens=new, min_new_tokens=new, top_k=0,
                             top_p=1.0, temperature=1.0)
        assert out.shape == (num_prompts * k, prompt_len + new)

    hf_new = min(hf_new_tokens or new_tokens, new_tokens)
    t_fp = t_hf = t_one = float("inf")
    cpu = {"fastpass": float("inf"), "hf": float("inf")}
    hf_reps = reps if hf_reps is None else hf_reps
    for rep in range(reps):  # interleaved, best of reps: the shared build machine's load drifts
        if rep and time_left() < 3 * t_fp + 30:
            break  # a second repetition would not finish inside the step's time limit
        t, c, batch = _time_once(run, device)
        t_fp, cpu["fastpass"] = min(t_fp, t), min(cpu["fastpass"], c)
        assert batch.num_tokens == num_prompts * k * new_tokens
        if rep >= hf_reps:
            continue
        try:
            t, c, _ = _time_once(lambda: hf(hf_new), device)
            t_hf, cpu["hf"] = min(t_hf, t), min(cpu["hf"], c)
            if hf_new < new_tokens:
                t_one = min(t_one, _time_once(lambda: hf(1), device)[0])
        except torch.cuda.OutOfMemoryError:  # HF holds K copies of the prompt: report, don't crash
            t_hf = float("nan")
            break
    if hf_new < new_tokens and t_hf == t_hf:
        t_hf = t_one + (t_hf - t_one) * (new_tokens - 1) / max(1, hf_new - 1)
    total = num_prompts * k * new_tokens
    stats = {**sampler.last_stats, "cpu_s": cpu, "t_hf": t_hf}
    if t_hf == t_hf and t_hf < float("inf"):
        HF_STEP_S[(num_prompts * k, prompt_len)] = t_hf / new_tokens  # for P1c's time estimate
    return total / t_fp, total / t_hf, stats


HF_STEP_S: dict = {}  # HF seconds per step at (rows, prompt length), from the cases run so far


def _vllm_row(case, folder, ids, k, new, fp_tps, load_note, eos=None):
    if folder is None:
        return dict(bench="e2e", case=case, fastpass=fp_tps, baseline_name="vLLM", baseline=None, unit="tok/s",
                    note=vllm_baseline.missing_note())
    r = vllm_baseline.generate(folder, ids, k, new, eos_ids=eos, timeout=max(60.0, min(3600.0, time_left() - 10)))
    return dict(bench="e2e", case=case, fastpass=fp_tps, baseline_name="vLLM (n=K, prefix caching)",
                baseline=r.tokens_per_s, unit="tok/s", ratio=fp_tps / r.tokens_per_s if r.tokens_per_s else None,
                note=f"{load_note}; {r.note}")


def _slowdown_rows(case, per_load: dict) -> list[dict]:
    """How much each side loses under the background load: idle tok/s over busy tok/s, fastpass's
    beside each baseline's (ratio > 1: fastpass loses less)."""
    loads = [name for name in per_load if name != "idle"]
    if "idle" not in per_load or not loads:
        return []
    rows = []
    for load in loads:
        idle, busy = per_load["idle"], per_load[load]
        slow = {side: idle[side] / busy[side] for side in idle if idle.get(side) and busy.get(side)}
        ours = [s for s in slow if s.startswith("fastpass")]
        for fast in ours:
            for side in (s for s in slow if s not in ours):
                rows.append(dict(bench="e2e", case=f"{case}: slowdown under load{_case_suffix(fast)}", fastpass=slow[fast],
                                 baseline_name=side, baseline=slow[side], unit="x", ratio=slow[side] / slow[fast],
                                 note=f"idle tok/s / tok/s with {load_name(load)} (lower is better; ratio > 1: "
                                      "fastpass loses less)"))
    return rows


def _load_note(load, info=None) -> str:
    return f"[{load_name(load)}] load average {os.getloadavg()[0]:.1f}"


def p6_rows(quick: bool, loads) -> list[dict]:
    rows = Rows()
    model = build(smollm2_135m_config(), "cpu", torch.float32)
    ids = prompt_ids(model, 1, 256).tolist()
    case = "P6 SmolLM2-135M shape, prompt 256, K=16, 32 new (fp32)"
    folder = vllm_baseline.ModelFolder(model) if vllm_baseline.python() else None
    per_load = {}
    try:
        for load in loads:
            with background_load(load):
                fp_tps, hf_tps, stats = run_case(model, 1, 256, 16, 32, "cpu", reps=1 if quick else 2)
                note = _load_note(load)
                bw, peak = measure_ceilings("cpu")[:2]
                roof = roofline_tokens_per_s(model, [256], np.full((1, 16), 32), bw, peak)
                rows.append(dict(bench="e2e", case=f"{case} [{load}]", fastpass=fp_tps, baseline_name="HF generate",
                                 baseline=hf_tps, unit="tok/s", ratio=fp_tps / hf_tps, roofline_frac=fp_tps / roof,
                                 note=f"{note}; roofline {roof:.0f} tok/s (measured {bw / 1e9:.0f} GB/s, "
                                      f"{peak / 1e9:.0f} GFLOP/s); {torch.get_num_threads()} threads; process CPU "
                                      f"seconds {stats['cpu_s']['fastpass']:.1f} vs {stats['cpu_s']['hf']:.1f}; "
                                      f"packed weights {stats.get('packed_weights')}; {_engine_stats(stats)}"))
                vrow = _vllm_row(f"{case} [{load}]", folder, ids, 16, 32, fp_tps, note)
                rows.append(vrow)
                per_load[load] = {"fastpass": fp_tps, "HF generate": hf_tps, "vLLM": vrow.get("baseline")}
    finally:
        if folder is not None:
            folder.close()
    rows += _slowdown_rows("P6", per_load)
    if not quick:
        hf_tps = per_load.get("idle", {}).get("HF generate")
        plain_tps = run_case(model, 1, 256, 16, 32, "cpu", reps=2, hf_reps=0, pack_weights=False)[0]
        rows.append(dict(bench="e2e", case="P6 variant: fastpass with pack_weights=False", fastpass=plain_tps,
                         baseline_name="HF generate", baseline=hf_tps, unit="tok/s",
                         ratio=plain_tps / hf_tps if hf_tps else None,
                         note="HF from the idle row; the shared-prefix engine on torch's own GEMMs"))
    return rows


def parse_baselines(text: str | None) -> list[str] | None:
    """``--baselines``: a comma-separated subset of vllm,hf (None: both)."""
    names = [x.strip() for x in text.split(",") if x.strip()] if text else None
    if names and set(names) - {"vllm", "hf"}:
        raise ValueError(f"--baselines takes vllm and/or hf (e.g. --baselines vllm), got {text!r}")
    return names


def parse_thread_caps(text: str | None) -> tuple:
    """``--fastpass-threads``: "auto" (None: every core, the engine's own choice) or a positive count."""
    caps = []
    for item in (text or "auto").split(","):
        item = item.strip()
        if item == "auto":
            caps.append(None)
        elif item.isdigit() and int(item) > 0:
            caps.append(int(item))
        else:
            raise ValueError(f"--fastpass-threads takes auto and/or positive counts (e.g. auto,1), got {text!r}")
    return tuple(dict.fromkeys(caps))


def fastpass_label(cap: int | None) -> str:
    return "fastpass" if cap is None else f"fastpass on {cap} thread{'s' * (cap > 1)}"


def _case_suffix(side: str) -> str:
    return "" if side == "fastpass" else f", {side}"


def _run_fastpass_capped(cap, *args) -> e2e_p7.Side:
    """The engine's threads capped at ``cap`` (it picks among 1 and torch's count), restored after."""
    with restored_threads():
        if cap is not None:
            torch.set_num_threads(cap)
        side = e2e_p7.run_fastpass(*args)
    side.name = fastpass_label(cap)
    return side


def p7_rows(quick: bool, loads, problems: int | None = None, baselines=("vllm", "hf"),
            fastpass_threads=(None,)) -> list[dict]:
    from fastpass.screen.loading import load_model

    rows = Rows()
    size = dict(e2e_p7.QUICK if quick else e2e_p7.FULL)
    if problems:
        size["problems"] = problems
    model, tok, _name = load_model(None, progress=False)
    prompts = e2e_p7.gsm8k_prompts(tok, size["problems"])
    eos = [int(tok.eos_token_id)]
    n, new = size["n"], size["max_new_tokens"]
    case = (f"P7 gsm8k preset, {len(prompts)} problems x n={n}, {new} new, EOS on, T=1 "
            f"(SmolLM2-135M-Instruct fp32)")
    folder = vllm_baseline.ModelFolder(model, tok) if vllm_baseline.python() else None
    per_load = {}
    try:
        for load in loads:
            with background_load(load):
                fasts = [_run_fastpass_capped(cap, model, tok, prompts, n, new, eos) for cap in fastpass_threads]
                hf = vl = None
                if "hf" in baselines:
                    hf = e2e_p7.run_hf(model, prompts, n, new, eos, pad_id=int(tok.pad_token_id or eos[0]))
                if "vllm" in baselines:
                    vl = (e2e_p7.run_vllm(folder, prompts, n, new, eos) if folder is not None
                          else e2e_p7.Side("vLLM", None, None, vllm_baseline.missing_note()))
                bw, peak, how = measure_ceilings("cpu")
                per_load[load] = {}
                for fast in fasts:
                    roof = roofline_tokens_per_s(model, [len(p) for p in prompts], fast.lengths, bw, peak)
                    rows += e2e_p7.rows_for(f"{case}{_case_suffix(fast.name)} [{load}]", fast, [s for s in (vl, hf) if s is not None],
                                            _load_note(load), (roof, how))
                    per_load[load][fast.name] = fast.tokens_per_s
            for key, side in (("HF generate", hf), ("vLLM", vl)):
                if side is not None:
                    per_load[load][key] = side.tokens_per_s
    finally:
        if folder is not None:
            folder.close()
    rows += _slowdown_rows("P7", per_load)
    return rows


def p1_rows(model, names, device, quick: bool = False, reps: int = 2, sizes=None) -> list[dict]:
    """P1a/P1b (EOS off) and P1c (long-tailed) on ``model``; ``sizes`` overrides {name: (P, L, K, new)}."""
    rows = Rows()
    bw, peak, ceil_note = measure_ceilings(device)
    for name in names:
        p, lp, k, new = (sizes or (P1_QUICK if quick else P1))[name]
        if time_left() < 30:
            rows.append(dict(bench="e2e", case=f"{name}", fastpass=None, note="skipped: the step's time limit is near"))
            continue
        if name == "P1c":
            rows.append(p1c_row(model, p, lp, k, new, P1C_MEAN[quick] if sizes is None else max(2, new // 4),
                                device, bw, peak, ceil_note, reps))
            continue
        hf_new = min(new, 16 if quick else 64)
        fp_tps, hf_tps, stats = run_case(model, p, lp, k, new, device, hf_new_tokens=hf_new, reps=reps, hf_reps=1)
        roof = roofline_tokens_per_s(model, [lp] * p, np.full((p, k), new), bw, peak)
        rows.append(dict(bench="e2e", case=f"{name} {_shape(model)}, {p}x K={k}, prompt {lp}, {new} new",
                         fastpass=fp_tps, baseline=hf_tps,
                         baseline_name="HF generate" + (f" (1 & {hf_new} new, extrap.)" if hf_new < new else ""),
                         unit="tok/s", ratio=fp_tps / hf_tps if hf_tps == hf_tps else None, roofline_frac=fp_tps / roof,
                         note=("HF generate ran out of memory; " if hf_tps != hf_tps else "")
                         + f"roofline {roof:.4g} tok/s ({ceil_note}); {_engine_stats(stats)}"))
    return rows


def _engine_stats(stats: dict) -> str:
    """The engine's own account of the run (whichever of these keys it reports)."""
    keys = ("graph", "graph_chunks", "chunks", "rows", "steps", "refills", "prefills", "threads")
    return "engine " + ", ".join(f"{k} {stats[k]}" for k in keys if stats.get(k) is not None)


def _shape(model) -> str:
    c = model.config
    return f"{c.model_type} {c.num_hidden_layers}L h{c.hidden_size} {str(model.dtype).removeprefix('torch.')}"


def p1c_row(model, p, lp, k, new, mean_len, device, bw, peak, ceil_note, reps=2) -> dict:
    """Long-tailed GPU case: V/mean_len random token ids end a sample (hit with probability ~1/L
    per step under a random model's near-uniform output: geometric lengths). Same EOS set for both."""
    import fastpass as fp

    V = model.config.vocab_size
    eos = torch.randperm(V, generator=torch.Generator().manual_seed(3))[: max(1, V // mean_len)].tolist()
    ids = prompt_ids(model, p, lp)
    sampler = fp.Sampler(model)
    sampler.sample(ids[:1, :8].tolist(), n=2, max_new_tokens=4, eos_token_id=eos)  # warm-up
    t_fp, lens_fp = float("inf"), None
    for rep in range(reps):
        if rep and time_left() < 3 * t_fp + 60:
            break
        t, _, batch = _time_once(lambda: sampler.sample(ids.tolist(), n=k, max_new_tokens=new, temperature=1.0,
                                                        seed=0, eos_token_id=eos), device)
        t_fp, lens_fp = min(t_fp, t), batch.lengths
    fp_tps = lens_fp.sum() / t_fp
    dev_ids = ids.to(device)
    hf_tps, lens_hf, hf_note = None, None, ""
    est = HF_STEP_S.get((p * k, lp), 0.0) * new  # HF steps until its last sample ends: ~all of them
    try:
        if est and time_left() < 1.5 * est + 20:
            raise TimeoutError(f"HF skipped: needs ~{est:.0f} s (from P1a), {time_left():.0f} s left in this step")
        t, _, out = _time_once(lambda: model.generate(
            dev_ids, attention_mask=torch.ones_like(dev_ids), do_sample=True, num_return_sequences=k,
            max_new_tokens=new, top_k=0, top_p=1.0, temperature=1.0, eos_token_id=eos,
            pad_token_id=model.generation_config.pad_token_id), device)
        lens_hf = e2e_p7.lengths_until_eos(out[:, lp:], eos)
        hf_tps = lens_hf.sum() / t
        hf_note = (f"HF {lens_hf.sum()} tokens in {t:.1f} s, length mean {lens_hf.mean():.1f}; lengths KS p="
                   f"{e2e_p7.compare_lengths(lens_fp, lens_hf)['ks_p']:.3f}")
    except torch.cuda.OutOfMemoryError:
        hf_note = "HF generate ran out of memory"
    except TimeoutError as exc:
        hf_note = str(exc)
    roof = roofline_tokens_per_s(model, [lp] * p, lens_fp, bw, peak)
    return dict(bench="e2e", case=f"P1c {_shape(model)}, {p}x K={k}, prompt {lp}, <= {new} new, "
                                  f"{len(eos)} EOS ids (mean length ~{mean_len})",
                fastpass=float(fp_tps), baseline_name="HF generate (same EOS set)",
                baseline=None if hf_tps is None else float(hf_tps), unit="tok/s",
                ratio=None if hf_tps is None else float(fp_tps / hf_tps), roofline_frac=float(fp_tps / roof),
                note=f"fastpass {lens_fp.sum()} tokens in {t_fp:.2f} s, length mean {lens_fp.mean():.1f} "
                     f"(max {lens_fp.max()}); {hf_note}; roofline {roof:.4g} tok/s ({ceil_note}); "
                     f"{_engine_stats(sampler.last_stats)}")


def run(quick: bool = False, device: str = "cpu", cases=None, loads=None, problems: int | None = None,
        baselines=None, fastpass_threads=None) -> list[dict]:
    rows = Rows()
    if device == "cpu":
        cases = list(cases or CPU_CASES)
        loads = list(loads or (["idle"] if quick else ["idle", "matmul"]))
        if "P6" in cases:
            rows += p6_rows(quick, loads)
        if "P7" in cases:
            rows += p7_rows(quick, loads, problems, tuple(baselines or ("vllm", "hf")),
                            parse_thread_caps(fastpass_threads))
        return rows
    cases = list(cases or GPU_CASES)
    model = build(qwen25_15b_config(), device, torch.bfloat16)
    rows += p1_rows(model, cases, device, quick)
    return rows


def main() -> None:
    ap = bench_parser(__doc__)
    ap.add_argument("--cases", help=f"comma-separated subset: {','.join(CPU_CASES)} (cpu), "
                                    f"{','.join(GPU_CASES)} (cuda)")
    ap.add_argument("--load", help="comma-separated: idle, matmul (default: idle,matmul; --quick: idle)")
    ap.add_argument("--problems", type=int, help="P7: the first N gsm8k problems (default 32; --quick 2)")
    ap.add_argument("--baselines", help="P7: comma-separated subset of vllm,hf (default both; HF under load "
                                        "takes ~2.5x its idle time)")
    ap.add_argument("--fastpass-threads", help="P7: comma-separated fastpass sides, each 'auto' (every core, the "
                                               "engine's choice) or a thread cap, e.g. auto,1 (default auto)")
    args = ap.parse_args()
    split = lambda s: [x.strip() for x in s.split(",") if x.strip()] if s else None
    try:
        baselines = parse_baselines(args.baselines)
        parse_thread_caps(args.fastpass_threads)
    except ValueError as e:
        ap.error(str(e))
    run_and_report(run, args, csv_path=args.csv, cases=split(args.cases), loads=split(args.load),
                   problems=args.problems, baselines=baselines, fastpass_threads=args.fastpass_threads)


if __name__ == "__main__":
    main()
