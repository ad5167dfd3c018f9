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

import argparse

import torch
import torch.nn.functional as F

from bench._common import report, sync, timeit
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


def _graph_replayer(fns):
    """One CUDA graph per callable, replayed in turn: times the device work without Python's
    launch overhead (the engine captures its decode step the same way)."""
    graphs = []
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for fn in fns:
            fn()
    torch.cuda.current_stream().wait_stream(side)
    for fn in fns:
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            fn()
        graphs.append(g)
    it = iter(range(10 ** 9))
    return lambda: graphs[next(it) % len(graphs)].replay()


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
        t_ours = timeit(_graph_replayer([one(c) for c in cases]), device, warmup=3, reps=reps)
    kd, vd = _duplicated(cases[0])
    variants = _sdpa_fn(cases[0], kd, vd, scale)
    times = {name: timeit(fn, device, warmup=2, reps=reps) for name, fn in variants.items()}
    best = min(times, key=times.get)
    nbytes = _decode_bytes(k, prefix, suffix, hq, hkv, d, cases[0]["q"].element_size())
    case = f"K={k} prefix={prefix} suffix={suffix} {hq}q/{hkv}kv d={d} {str(dtype)[6:]}"
    note = f"{label}; CUDA graph replay (eager {1e6 * t_eager:.0f}us)" if device == "cuda" else label
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
    rows = []
    scale = d ** -0.5
    for prefix in prefixes:
        c = _case(k, prefix, suffix, hq, hkv, d, dtype, device)
        kd, vd = _duplicated(c)
        flat = dict(c, prefix_k=c["prefix_k"][:, :, :0], prefix_v=c["prefix_v"][:, :, :0],
                    prefix_lens=torch.zeros_like(c["prefix_lens"]), suffix_k=kd, suffix_v=vd,
                    suffix_lens=c["suffix_lens"] + prefix)
        split = lambda: A.decode_attention(**c, scale=scale, backend=tier, max_seqs_per_prompt=k)
        nosplit = lambda: A.decode_attention(**flat, scale=scale, backend=tier, max_seqs_per_prompt=k)
        if device == "cuda":
            split, nosplit = _graph_replayer([split]), _graph_replayer([nosplit])
        t_split = timeit(split, device, reps=reps)
        t_flat = timeit(nosplit, device, reps=reps)
        rows.append(dict(bench="P3 crossover", case=f"K={k} prefix={prefix} suffix={suffix}",
                         fastpass=t_split * 1e6, baseline_name=f"{tier} without split",
                         baseline=t_flat * 1e6, unit="us", ratio=t_flat / t_split,
                         note="ratio > 1: the split pays"))
        del kd, vd, flat
    return rows


def run(quick: bool = False, device: str = "cpu") -> list[dict]:
    if device == "cuda":
        bw = _hbm_bandwidth(device)
        rows = _p3_rows(128, 4096, 256, 12, 2, 128, torch.bfloat16, device, 50, "triton",
                        f"triton split; HBM copy {bw / 1e12:.2f} TB/s", bw)
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
    rows = _p3_rows(16, 512 if quick else 2048, 32, 12, 2, 128, torch.float32, device, 5, "reference",
                    "CPU tier (torch reference split), 1 thread", None)
    rows += _crossover_rows(16, [32, 128, 512] if quick else [32, 64, 128, 256, 512, 1024], 32, 9, 3,
                            64, torch.float32, device, 5, "reference")
    return rows


def sweep(device: str = "cuda") -> dict:
    """Time launch configurations of the two decode parts at the P3 shape; print them and set
    the fastest in ``TUNING`` (copy the printed dict into triton_kernels/attention.py)."""
    import itertools

    from fastpass.triton_kernels import attention as tk

    k, prefix, suffix, hq, hkv, d = 128, 4096, 256, 12, 2, 128
    cases = [_case(k, prefix, suffix, hq, hkv, d, torch.bfloat16, device, seed=i) for i in range(3)]
    prefix_part = lambda c: tk.decode_prefix_partials(c["q"], c["prefix_k"], c["prefix_v"], c["prefix_lens"],
                                                      c["suffix_lens"], c["seq_offsets"], d ** -0.5,
                                                      max_seqs_per_prompt=k)
    parts = [prefix_part(c) for c in cases]
    suffix_part = lambda i: tk.decode_suffix(cases[i]["q"], cases[i]["suffix_k"], cases[i]["suffix_v"],
                                             cases[i]["suffix_lens"], d ** -0.5, opart=parts[i][0],
                                             lpart=parts[i][1])
    best = dict(tk.TUNING)
    results = []
    for waves, bm, bn, warps, stages in itertools.product((0.5, 1.0, 2.0), (64, 128), (64, 128), (4, 8), (2, 3)):
        tk.TUNING.update(prefix=(bm, bn, warps, stages), split_waves=waves)
        try:
            t = timeit(_graph_replayer([lambda c=c: prefix_part(c) for c in cases]), device, warmup=3, reps=30)
        except Exception as exc:  # out of shared memory / registers
            print(f"prefix {waves} {(bm, bn, warps, stages)}: {type(exc).__name__}")
            continue
        results.append(("prefix", waves, (bm, bn, warps, stages), t))
    top = min((r for r in results if r[0] == "prefix"), key=lambda r: r[3])
    best.update(split_waves=top[1], prefix=top[2])
    tk.TUNING.update(best)
    parts = [prefix_part(c) for c in cases]
    for bn, warps, stages in itertools.product((32, 64, 128), (2, 4, 8), (2, 3, 4)):
        tk.TUNING.update(suffix=(bn, warps, stages))
        try:
            t = timeit(_graph_replayer([lambda i=i: suffix_part(i) for i in range(3)]), device, warmup=3,
                       reps=30)
        except Exception as exc:
            print(f"suffix {(bn, warps, stages)}: {type(exc).__name__}")
            continue
        results.append(("suffix", None, (bn, warps, stages), t))
    best["suffix"] = min((r for r in results if r[0] == "suffix"), key=lambda r: r[3])[2]
    tk.TUNING.update(best)
    for part, waves, cfg, t in sorted(results, key=lambda r: (r[0], r[3]))[:8] + sorted(
            results, key=lambda r: (r[0] != "suffix", r[3]))[:8]:
        print(f"{part:6s} waves={waves} cfg={cfg} {t * 1e6:.1f} us")
    print("TUNING =", best)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--sweep", action="store_true", help="GPU: tune launch configs first")
    args = ap.parse_args()
    if args.sweep:
        sweep(args.device)
    report(run(quick=args.quick, device=args.device), args.device)


if __name__ == "__main__":
    main()
