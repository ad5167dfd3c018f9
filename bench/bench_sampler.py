"""P2: the fused sampler, logits [B, V] -> tokens, against torch softmax + multinomial.

GPU (SPEC P2): B=512, V=151936 (Qwen2.5 vocabulary), bf16 and fp32 logits. fastpass's exact
two-level sampler (one exp per element, two random numbers per row) is timed eagerly and as a
replayed CUDA graph (how the engine runs it); baselines: torch softmax + multinomial, the
exponential race argmax(p / Exp(1)) in torch, a one-pass Triton Gumbel-max kernel with Philox
noise per element (the design the two-level scheme replaces; written here only to measure it),
and FlashInfer's ``sampling_from_logits`` when importable. roofline_frac = logits bytes / time /
peak HBM bandwidth (nominal by device name, else a measured device-to-device copy).
CPU (--quick): the reference tier (what the CPU engine calls) at the SmolLM2 vocabulary.
"""
from __future__ import annotations


import torch

from bench._common import Rows, timeit, main_for
from fastpass import sampling as S

_PEAK_BW = {"H100 PCIe": 2.0e12, "H100 NVL": 3.9e12, "H100": 3.35e12, "H200": 4.8e12,
            "A100-SXM4-80GB": 2.04e12, "A100": 1.56e12, "B200": 8.0e12}


def _peak_bandwidth(device: str) -> tuple[float, str]:
    name = torch.cuda.get_device_name()
    for key, bw in _PEAK_BW.items():
        if key in name:
            return bw, f"nominal {bw / 1e12:.2f} TB/s ({key})"
    x = torch.empty(512 * 2**20, dtype=torch.uint8, device=device)
    y = torch.empty_like(x)
    t = timeit(lambda: y.copy_(x), device, warmup=3, reps=10)
    bw = 2 * x.numel() / t
    return bw, f"measured copy {bw / 1e12:.2f} TB/s"


def _graphed(fn):
    """Capture fn in a CUDA graph; returns a replay callable (times device work only)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()
        fn()
    torch.cuda.current_stream().wait_stream(side)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fn()
    return g.replay


def _gumbel_max_triton():
    import triton
    import triton.language as tl

    @triton.jit
    def _gumbel_tile(logits_ptr, V, n_tiles, inv_t, seed, val_ptr, idx_ptr, TILE: tl.constexpr):
        row = tl.program_id(0)
        t = tl.program_id(1)
        offs = t * TILE + tl.arange(0, TILE)
        ok = offs < V
        x = tl.load(logits_ptr + row.to(tl.int64) * V + offs, mask=ok, other=float("-inf"))
        u = tl.rand(seed, row.to(tl.int64) * V + offs)
        g = x.to(tl.float32) * inv_t - tl.log(-tl.log(tl.maximum(u, 1e-20)))
        g = tl.where(ok, g, float("-inf"))
        i = tl.argmax(g, axis=0)
        tl.store(val_ptr + row * n_tiles + t, tl.max(g, axis=0))
        tl.store(idx_ptr + row * n_tiles + t, t * TILE + i)

    def sample(logits, temperature=1.0, seed=0):
        B, V = logits.shape
        tile = 4096
        nt = -(-V // tile)
        val = torch.empty((B, nt), device=logits.device)
        idx = torch.empty((B, nt), dtype=torch.int32, device=logits.device)
        _gumbel_tile[(B, nt)](logits, V, nt, 1.0 / temperature, seed, val, idx, TILE=tile, num_warps=8)
        return idx.gather(1, val.argmax(dim=1, keepdim=True))[:, 0]

    return sample


def _baselines(logits, temperature):
    def softmax_multinomial():
        return torch.multinomial(torch.softmax(logits.float() / temperature, dim=-1), 1)

    def exponential_race():
        p = torch.softmax(logits.float() / temperature, dim=-1)
        return (p / torch.empty_like(p).exponential_()).argmax(dim=-1)

    return {"torch softmax+multinomial": softmax_multinomial, "torch exponential race": exponential_race}


def _gpu_rows(quick: bool, device: str) -> list[dict]:
    peak, peak_note = _peak_bandwidth(device)
    rows = Rows()
    shapes = [(512, 151936)] + ([] if quick else [(64, 151936), (512, 32000)])
    for B, V in shapes:
        for dtype in (torch.bfloat16, torch.float32):
            g = torch.Generator(device=device).manual_seed(0)
            logits = (torch.randn(B, V, generator=g, device=device) * 3).to(dtype)
            nbytes = logits.numel() * logits.element_size()
            seed_t = torch.tensor(1, dtype=torch.int64, device=device)
            step_t = torch.zeros((), dtype=torch.int64, device=device)
            case = f"[{B},{V}] {str(dtype).replace('torch.', '')}"
            base = _baselines(logits, 1.0)
            t_base = {name: timeit(fn, device, warmup=3, reps=20) for name, fn in base.items()}
            t_mult = t_base["torch softmax+multinomial"]
            variants = {"T=1 graph": dict(), "T=1 eager": dict()}
            if not quick and (B, V) == (512, 151936):
                variants.update({"top_k=50 graph": dict(top_k=50), "top_p=0.95 graph": dict(top_p=0.95),
                                 "min_p=0.05 graph": dict(min_p=0.05)})
            for label, kw in variants.items():
                fn = lambda kw=kw: S.sample(logits, seed=seed_t, step=step_t, **kw)
                t = timeit(fn if "eager" in label else _graphed(fn), device, warmup=3, reps=20)
                rows.append(dict(bench="P2 sampler", case=f"{case} {label}", fastpass=t * 1e6,
                                 baseline_name="torch softmax+multinomial", baseline=t_mult * 1e6,
                                 unit="us", ratio=t_mult / t, roofline_frac=nbytes / t / peak,
                                 note=f"HBM: {peak_note}; {'exact filter path' if kw else 'plain'}"))
            others = dict(t_base)
            try:
                gumbel = _gumbel_max_triton()
                others["triton Gumbel-max (Philox/elt)"] = timeit(
                    _graphed(lambda: gumbel(logits, 1.0, 1)), device, warmup=3, reps=20)
            except Exception as exc:  # pragma: no cover - measurement aid only
                print(f"gumbel-max baseline failed: {exc}")
            try:
                import flashinfer.sampling as fis

                others["flashinfer sampling_from_logits"] = timeit(
                    lambda: fis.sampling_from_logits(logits), device, warmup=3, reps=20)
            except Exception as exc:
                print(f"flashinfer not measured: {type(exc).__name__}: {exc}")
            t_fp = rows[-len(variants)]["fastpass"] / 1e6          # the graphed T=1 time
            for name, t in others.items():
                if name == "torch softmax+multinomial":
                    continue
                rows.append(dict(bench="P2 sampler", case=f"{case} vs {name}", fastpass=t_fp * 1e6,
                                 baseline_name=name, baseline=t * 1e6, unit="us", ratio=t / t_fp,
                                 roofline_frac=nbytes / t / peak,
                                 note="roofline column = the baseline's fraction of HBM"))
    if not quick:
        rows += _tile_sweep(device, peak)
    return rows


def _tile_sweep(device: str, peak: float) -> list[dict]:
    """Tile width and warps of the two-level kernels, bf16 [512, 151936], graphed."""
    logits = (torch.randn(512, 151936, device=device) * 3).to(torch.bfloat16)
    seed_t = torch.tensor(1, dtype=torch.int64, device=device)
    step_t = torch.zeros((), dtype=torch.int64, device=device)
    rows = Rows()
    for tile in (1024, 2048, 4096, 8192):
        for warps in (4, 8, 16):
            fn = lambda: S.sample_triton(logits, 1.0, None, seed_t, step_t, None, None, tile=tile,
                                         num_warps=warps)
            t = timeit(_graphed(fn), device, warmup=3, reps=20)
            rows.append(dict(bench="P2 sampler tuning", case=f"bf16 [512,151936] tile={tile} warps={warps}",
                             fastpass=t * 1e6, unit="us", roofline_frac=logits.numel() * 2 / t / peak))
    from fastpass.triton_kernels import sampling as k   # the first pass alone: how the time splits

    nt = -(-151936 // 4096)
    m = torch.empty((512, nt), device=device)
    s, arg = torch.empty_like(m), torch.empty((512, nt), dtype=torch.int32, device=device)
    stats = lambda: k._tile_stats_kernel[(512, nt)](logits, 151936, 151936, nt, logits, 1.0, logits, m, s,
                                                    arg, TILE=4096, INV_T_PTR=False, HAS_CUTOFF=False,
                                                    HAS_GREEDY=False, num_warps=8)
    t = timeit(_graphed(stats), device, warmup=3, reps=20)
    rows.append(dict(bench="P2 sampler tuning", case="bf16 [512,151936] tile=4096 pass 1 only",
                     fastpass=t * 1e6, unit="us", roofline_frac=logits.numel() * 2 / t / peak))
    return rows


def _cpu_rows(quick: bool) -> list[dict]:
    rows = Rows()
    shapes = [(16, 49152), (64, 49152)] + ([] if quick else [(512, 151936)])
    for B, V in shapes:
        logits = torch.randn(B, V, generator=torch.Generator().manual_seed(0)) * 3
        t_mult = timeit(lambda: torch.multinomial(torch.softmax(logits, dim=-1), 1), "cpu", 1, 5)
        variants = {"T=1": dict(), "top_k=50": dict(top_k=50)}
        if not quick:
            variants.update({"top_p=0.95": dict(top_p=0.95), "min_p=0.05": dict(min_p=0.05)})
        for label, kw in variants.items():
            t = timeit(lambda kw=kw: S.sample(logits, seed=1, step=2, **kw), "cpu", 1, 5)
            rows.append(dict(bench="P2 sampler", case=f"[{B},{V}] fp32 {label}", fastpass=t * 1e3,
                             baseline_name="torch softmax+multinomial", baseline=t_mult * 1e3,
                             unit="ms", ratio=t_mult / t, note=f"reference tier, {torch.get_num_threads()} threads"))
    return rows


def run(quick: bool = False, device: str = "cpu") -> list[dict]:
    if str(device).startswith("cuda"):
        return _gpu_rows(quick, device)
    return _cpu_rows(quick)


def main() -> None:
    main_for(run, __doc__)

if __name__ == "__main__":
    main()
