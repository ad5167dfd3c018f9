"""P3: one decode step of shared-prefix attention vs SDPA over the prompt duplicated per sequence.

GPU (SPEC P3): K=128 sequences, prefix 4096, suffix 256, 12 q / 2 kv heads, d=128, bf16; the
triton split kernel against torch SDPA over duplicated KV (the best of enable_gqa and expanded
heads), and FlashInfer's cascade when importable. A sweep over prefix lengths measures where the
split starts to pay against the same Triton kernel run without the split (prefix copied into
every suffix), which is the engine's choice. Inputs rotate over several copies so the 50 MB L2
does not serve repeated runs. CPU: the same at small sizes, the torch reference split (the CPU
tier of the engine) against SDPA.
"""
from __future__ import annotations


import torch
import torch.nn.functional as F

from bench._common import Rows, sync, timeit, bench_parser, run_and_report
from fastpass import attention as A


def _case(k, prefix, suffix, hq, hkv, d, dtype, device, seed=0):
    g = torch.Generator(device=device).manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, device=device, dtype=torch.float32).to(dtype)
    i32 = lambda xs: torch.tensor(xs, dtype=torch.int32, device=device)
    return dict(q=r(k, hq, d), prefix_k=r(1, hkv, prefix, d), prefix_v=r(1, hkv, prefix, d),
                prefix_lens=i32([prefix]), suffix_k=r(k, hkv, suffix, d), suffix_v=r(k, hkv, suffix, d),
                suffix_lens=i32([suffix] * k), seq_offsets=i32([0, k]))


def _duplicated(c):
    """Per-sequence KV [K, Hkv, prefix+suffix, D]: what HF generate(num_return_sequences=K) keeps."""
    k = c["q"].shape[0]
    cat = lambda pre, suf: torch.cat([pre.expand(k, -1, -1, -1), suf], 2).contiguous()
    return cat(c["prefix_k"], c["suffix_k"]), cat(c["prefix_v"], c["suffix_v"])


def _sdpa_fn(c, kd, vd, scale):
    q = c["q"].unsqueeze(2)  # [K, Hq, 1, D]
    g = q.shape[1] // kd.shape[1]
    variants = {}
    try:
        F.scaled_dot_product_attention(q, kd, vd, scale=scale, enable_gqa=True)
        variants["gqa"] = lambda: F.scaled_dot_product_attention(q, kd, vd, scale=scale, enable_gqa=True)
    except (TypeError, RuntimeError):
        pass
    ke, ve = kd.repeat_interleave(g, 1), vd.repeat_interleave(g, 1)
    variants["expanded"] = lambda: F.scaled_dot_product_attention(q, ke, ve, scale=scale)
    return variants


def _device_time(fns, device, reps=20, inner=20):
    """Seconds per call of the callables, taken in turn. On CUDA: one graph holding ``inner``
    calls back to back (as the engine's captured decode step holds every layer's attention),
    so Python's launch overhead and the gap before the first kernel stay out of the number."""
    if device != "cuda":
        it = iter(range(10 ** 9))
        return timeit(lambda: fns[next(it) % len(fns)](), device, warmup=2, reps=reps)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # compile and warm up outside the capture
        for fn in fns:
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for i in range(inner):
            fns[i % len(fns)]()
    return timeit(graph.replay, device, warmup=2, reps=reps) / inner


def _hbm_bandwidth(device):
    """Measured device-to-device copy bandwidth (bytes read + written per second)."""
    x = torch.empty(1 << 28, dtype=torch.uint8, device=device)
    y = torch.empty_like(x)
    t = timeit(lambda: y.copy_(x), device, warmup=3, reps=20)
    return 2 * x.numel() / t


def _decode_bytes(k, prefix, suffix, hq, hkv, d, elt):
    return elt * (2 * hkv * d * (prefix + k * suffix) + 2 * k * hq * d)


def _flashinfer_fn(c, scale):
    """FlashInfer two-level cascade (shared prefix + unique suffix), or (None, reason)."""
    try:
        import flashinfer
    except ImportError:
        return None, "flashinfer not importable"
    try:
        k, hq, d = c["q"].shape
        hkv, prefix, suffix = c["prefix_k"].shape[1], c["prefix_k"].shape[2], c["suffix_k"].shape[2]
        dev = c["q"].device
        # page size 1 paged cache: the prefix pages first, then each sequence's suffix pages
        pages = lambda pre, suf: torch.cat([pre[0], suf.permute(1, 0, 2, 3).reshape(hkv, -1, d)], 1)
        kv, vv = pages(c["prefix_k"], c["suffix_k"]), pages(c["prefix_v"], c["suffix_v"])
        # NHD paged layout [pages, 2, page_size=1, Hkv, D]
        cache = torch.stack([kv.transpose(0, 1), vv.transpose(0, 1)], 1).unsqueeze(2).contiguous()
        i32 = lambda xs: torch.tensor(xs, dtype=torch.int32, device=dev)
        ws = torch.empty(256 << 20, dtype=torch.uint8, device=dev)
        w = flashinfer.MultiLevelCascadeAttentionWrapper(2, ws, "NHD")
        suffix_pages = prefix + torch.arange(k * suffix, device=dev, dtype=torch.int32)
        w.plan([i32([0, k]), torch.arange(k + 1, dtype=torch.int32, device=dev)],
               [i32([0, prefix]), i32(list(range(0, k * suffix + 1, suffix)))],
               [torch.arange(prefix, dtype=torch.int32, device=dev), suffix_pages],
               [i32([1]), i32([1] * k)], hq, hkv, d, 1, sm_scale=scale)
        fn = lambda: w.run(c["q"], cache)
        fn()
        return fn, "flashinfer cascade, page size 1"
    except Exception as exc:  # an API drift must not sink the other rows
        return None, f"flashinfer cascade failed: {type(exc).__name__}: {str(exc)[:80]}"


def _p3_rows(k, prefix, suffix, hq, hkv, d, dtype, device, reps, tier, label, bw):
    scale = d ** -0.5
    copies = 3 if device == "cuda" else 1
    cases = [_case(k, prefix, suffix, hq, hkv, d, dtype, device, seed=i) for i in range(copies)]
    it = iter(range(10 ** 9))
    one = lambda c: (lambda: A.decode_attention(**c, scale=scale, backend=tier, max_seqs_per_prompt=k))
    t_ours = t_eager = timeit(lambda: one(cases[next(it) % copies])(), device, warmup=3, reps=reps)
    if device == "cuda":
        t_ours = _device_time([one(c) for c in cases], device, reps)
    kd, vd = _duplicated(cases[0])
    variants = _sdpa_fn(cases[0], kd, vd, scale)
    times = {name: _device_time([fn], device, reps, inner=4) for name, fn in variants.items()}
    best = min(times, key=times.get)
    nbytes = _decode_bytes(k, prefix, suffix, hq, hkv, d, cases[0]["q"].element_size())
    case = f"K={k} prefix={prefix} suffix={suffix} {hq}q/{hkv}kv d={d} {str(dtype)[6:]}"
    note = f"{label}; in a CUDA graph (eager call {1e6 * t_eager:.0f}us)" if device == "cuda" else label
    note += f"; SDPA {best} ({', '.join(f'{n} {1e6 * t:.0f}us' for n, t in times.items())})"
    rows = [dict(bench="P3 attention", case=case, fastpass=t_ours * 1e6, baseline_name="SDPA dup KV",
                 baseline=times[best] * 1e6, unit="us", ratio=times[best] / t_ours,
                 roofline_frac=(nbytes / bw / t_ours) if bw else None, note=note)]
    if device == "cuda":
        fi, why = _flashinfer_fn(cases[0], scale)
        if fi is not None:
            t_fi = timeit(fi, device, warmup=2, reps=reps)
            rows.append(dict(bench="P3 attention", case=case, fastpass=t_ours * 1e6,
                             baseline_name="FlashInfer cascade", baseline=t_fi * 1e6, unit="us",
                             ratio=t_fi / t_ours, note=why))
        else:
            rows[0]["note"] += f"; {why}"
    return rows


def _crossover_rows(k, prefixes, suffix, hq, hkv, d, dtype, device, reps, tier):
    """Split vs the same tier without the split (prefix copied into each sequence's suffix)."""
    rows = Rows()
    scale = d ** -0.5
    for prefix in prefixes:
        c = _case(k, prefix, suffix, hq, hkv, d, dtype, device)
        kd, vd = _duplicated(c)
        flat = dict(c, prefix_k=c["prefix_k"][:, :, :0], prefix_v=c["prefix_v"][:, :, :0],
                    prefix_lens=torch.zeros_like(c["prefix_lens"]), suffix_k=kd, suffix_v=vd,
                    suffix_lens=c["suffix_lens"] + prefix)
        split = lambda: A.decode_attention(**c, scale=scale, backend=tier, max_seqs_per_prompt=k)
        nosplit = lambda: A.decode_attention(**flat, scale=scale, backend=tier, max_seqs_per_prompt=k)
        t_split = _device_time([split], device, reps)
        t_flat = _device_time([nosplit], device, reps, inner=5)
        rows.append(dict(bench="P3 crossover", case=f"K={k} prefix={prefix} suffix={suffix}",
                         fastpass=t_split * 1e6, baseline_name=f"{tier} without split",
                         baseline=t_flat * 1e6, unit="us", ratio=t_flat / t_split,
                         note="ratio > 1: the split pays"))
        del kd, vd, flat
    return rows


def _prefill_rows(b, length, hq, hkv, d, dtype, device, reps, tier):
    """Causal varlen prefill of b prompts against SDPA (causal) on the same prompts as a batch."""
    g = torch.Generator(device=device).manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g, device=device, dtype=torch.float32).to(dtype)
    q, k, v = r(b * length, hq, d), r(b * length, hkv, d), r(b * length, hkv, d)
    cu = torch.arange(0, b * length + 1, length, dtype=torch.int32, device=device)
    ours = lambda: A.prefill_attention(q, k, v, cu, d ** -0.5, backend=tier, max_seqlen=length)
    qb, kb, vb = (x.view(b, length, -1, d).transpose(1, 2) for x in (q, k, v))
    kb, vb = kb.repeat_interleave(hq // hkv, 1), vb.repeat_interleave(hq // hkv, 1)
    sdpa = lambda: F.scaled_dot_product_attention(qb, kb, vb, is_causal=True, scale=d ** -0.5)
    t_ours, t_sdpa = _device_time([ours], device, reps, inner=5), _device_time([sdpa], device, reps, inner=5)
    flops = 2 * 2 * b * hq * d * length * (length + 1) / 2
    return [dict(bench="prefill attention", case=f"{b} x {length} tokens {hq}q/{hkv}kv d={d} {str(dtype)[6:]}",
                 fastpass=t_ours * 1e6, baseline_name="SDPA causal (heads expanded)", baseline=t_sdpa * 1e6,
                 unit="us", ratio=t_sdpa / t_ours, note=f"{tier}; {flops / t_ours / 1e12:.0f} TFLOP/s")]


def run(quick: bool = False, device: str = "cpu") -> list[dict]:
    if device == "cuda":
        bw = _hbm_bandwidth(device)
        from fastpass.triton_kernels.attention import TUNING

        mode = "concurrent" if TUNING["concurrent"] else "sequential"
        rows = Rows()
        rows += _p3_rows(128, 4096, 256, 12, 2, 128, torch.bfloat16, device, 50, "triton",
                        f"triton split, {mode} mode; HBM copy {bw / 1e12:.2f} TB/s", bw)
        rows += _prefill_rows(8, 512 if quick else 2048, 12, 2, 128, torch.bfloat16, device, 10, "triton")
        rows += _crossover_rows(128, [32, 64, 128, 256, 512, 1024, 4096] if not quick else [64, 512],
                                256, 12, 2, 128, torch.bfloat16, device, 30, "triton")
        sync(device)
        return rows
    # One thread: on a shared 2-core machine, 2 OpenMP threads stall ~100x whenever the other
    # core is busy, which would time the neighbours rather than the kernels.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _cpu_rows(quick, device)
    finally:
        torch.set_num_threads(threads)


def _cpu_rows(quick, device):
    from fastpass import _backend

    native = _backend.usable("cpu", device)
    tier = "cpu" if native else "reference"
    rows = Rows()
    for t, label in (("cpu", "C++ tier (csrc/cpu/attention.cpp), 1 thread"),
                     ("reference", "torch reference split, 1 thread")):
        if t == "reference" or native:
            rows += _p3_rows(16, 512 if quick else 2048, 32, 12, 2, 128, torch.float32, device, 5, t, label, None)
    rows += _p3_rows(16, 256, 16, 9, 3, 64, torch.float32, device, 20, tier,
                     f"{tier} tier, 1 thread: one layer of the P6 decode step", None)
    rows += _crossover_rows(16, [32, 128, 512] if quick else [32, 64, 128, 256, 512, 1024], 32, 9, 3,
                            64, torch.float32, device, 5, tier)
    rows += _prefill_rows(4, 128 if quick else 256, 9, 3, 64, torch.float32, device, 5, "reference")
    return rows


def sweep(device: str = "cuda", shape=(128, 4096, 256, 12, 2, 128)) -> dict:
    """Time launch configurations at the P3 shape (prefix part alone, suffix + merge alone,
    then whole decode in both modes), print the best, and set them in ``TUNING`` (copy the
    printed dict into triton_kernels/attention.py)."""
    import itertools

    from fastpass.triton_kernels import attention as tk

    k, prefix, suffix, hq, hkv, d = shape
    scale = d ** -0.5
    cases = [_case(k, prefix, suffix, hq, hkv, d, torch.bfloat16, device, seed=i) for i in range(3)]
    prefix_part = lambda c: (lambda: tk.decode_prefix_partials(
        c["q"], c["prefix_k"], c["prefix_v"], c["prefix_lens"], c["suffix_lens"], c["seq_offsets"],
        scale, max_seqs_per_prompt=k))
    whole = lambda c: (lambda: tk.decode(**c, scale=scale, max_seqs_per_prompt=k))
    best, results = dict(tk.TUNING), []

    def trial(kind, key, fns, **tuning):
        tk.TUNING.update(tuning)
        try:
            results.append((kind, key, _device_time(fns, device, reps=10, inner=10)))
        except Exception as exc:  # out of shared memory / registers
            print(f"{kind} {key}: {type(exc).__name__}")

    for bm, bn, warps, stages in itertools.product((64, 128), (64, 128), (4, 8), (2, 3)):
        for waves in (1.0, 2.0, 4.0):
            trial("prefix", (bm, bn, warps, stages, waves), [prefix_part(c) for c in cases],
                  prefix=(bm, bn, warps, stages), split_waves=waves)
    top = min((r for r in results if r[0] == "prefix"), key=lambda r: r[2])[1]
    best.update(prefix=top[:4], split_waves=top[4])
    tk.TUNING.update(best)
    parts = [prefix_part(c)() for c in cases]
    suffix_part = lambda c, p: (lambda: tk.decode_suffix(c["q"], c["suffix_k"], c["suffix_v"],
                                                         c["suffix_lens"], scale, opart=p[0], lpart=p[1]))
    for cfg in itertools.product((32, 64, 128), (2, 4, 8), (2, 3)):
        trial("suffix", cfg, [suffix_part(c, p) for c, p in zip(cases, parts)], suffix=cfg)
    best["suffix"] = min((r for r in results if r[0] == "suffix"), key=lambda r: r[2])[1]
    for waves in (0.25, 0.5, 1.0):
        trial("whole", ("concurrent", waves), [whole(c) for c in cases],
              **dict(best, concurrent=True, concurrent_waves=waves))
    trial("whole", ("sequential",), [whole(c) for c in cases], **dict(best, concurrent=False))
    top = min((r for r in results if r[0] == "whole"), key=lambda r: r[2])[1]
    best["concurrent"] = top[0] == "concurrent"
    if best["concurrent"]:
        best["concurrent_waves"] = top[1]
    tk.TUNING.update(best)
    for kind in ("prefix", "suffix", "whole"):
        for _, key, t in sorted((r for r in results if r[0] == kind), key=lambda r: r[2])[:5]:
            print(f"{kind:6s} {key} {t * 1e6:.1f} us")
    print("TUNING =", best)
    return best


def main() -> None:
    ap = bench_parser(__doc__)
    ap.add_argument("--sweep", action="store_true", help="GPU: tune launch configs first")
    args = ap.parse_args()
    if args.sweep:
        sweep(args.device)
    run_and_report(run, args)

if __name__ == "__main__":
    main()
