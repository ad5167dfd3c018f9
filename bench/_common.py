"""Shared benchmark plumbing: timing, environment stamp, markdown table, results.csv."""
from __future__ import annotations

import csv
import datetime as _dt
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

RESULTS_CSV = Path(__file__).with_name("results.csv")
CSV_FIELDS = ["date", "commit", "device", "torch", "triton", "transformers", "bench", "case",
              "fastpass", "baseline_name", "baseline", "unit", "ratio", "roofline_frac", "note"]


def sync(device: str) -> None:
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def best_interleaved(fns: dict, reps: int = 7, warmup: int = 1) -> dict:
    """Best (minimum) CPU wall seconds of each named fn over ``reps`` rounds that run every fn once,
    in turn: on a shared machine the load drifts, and interleaving exposes each side to the same drift."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    best = {name: float("inf") for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def timeit(fn, device: str = "cpu", warmup: int = 2, reps: int = 5) -> float:
    """Median seconds of ``fn()`` after warm-up; CUDA timed with events."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    if str(device).startswith("cuda"):
        import torch

        for _ in range(reps):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b) / 1e3)
    else:
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _version(mod: str) -> str:
    try:
        return __import__(mod).__version__
    except Exception:
        return "-"


def env_info(device: str = "cpu") -> dict:
    commit = os.environ.get("FASTPASS_COMMIT")  # set by gpu_check.sh where .git does not travel
    try:
        commit = commit or subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, cwd=Path(__file__).parent).stdout.strip() or "-"
    except OSError:
        commit = "-"
    if str(device).startswith("cuda"):
        import torch

        dev = torch.cuda.get_device_name()
    else:
        dev = f"CPU {platform.processor() or platform.machine()} x{os.cpu_count()}"
    return {"date": _dt.date.today().isoformat(), "commit": commit, "device": dev,
            "torch": _version("torch"), "triton": _version("triton"),
            "transformers": _version("transformers")}


def report(rows: list[dict], device: str = "cpu", write_csv: bool = True) -> str:
    """Print rows as a markdown table and append them to bench/results.csv.

    Each row: bench, case, fastpass, baseline_name, baseline, unit, and optionally ratio
    (baseline / fastpass for times), roofline_frac, note."""
    env = env_info(device)
    lines = [f"device: {env['device']} | date {env['date']} | commit {env['commit']} | torch "
             f"{env['torch']} | triton {env['triton']} | transformers {env['transformers']}", "",
             "| bench | case | fastpass | baseline | baseline value | ratio | roofline | note |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        unit = r.get("unit", "")
        fmt = lambda v: "-" if v is None else (f"{v:.4g} {unit}" if isinstance(v, float) else str(v))
        ratio = r.get("ratio")
        roof = r.get("roofline_frac")
        lines.append(f"| {r['bench']} | {r['case']} | {fmt(r.get('fastpass'))} | "
                     f"{r.get('baseline_name', '-')} | {fmt(r.get('baseline'))} | "
                     f"{'-' if ratio is None else f'{ratio:.2f}x'} | "
                     f"{'-' if roof is None else f'{100 * roof:.0f}%'} | {r.get('note', '')} |")
    text = "\n".join(lines)
    print(text, flush=True)
    if write_csv:
        new = not RESULTS_CSV.exists()
        with RESULTS_CSV.open("a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=CSV_FIELDS, extrasaction="ignore")
            if new:
                w.writeheader()
            for r in rows:
                w.writerow({**env, **r})
    return text


def bench_parser(doc: str | None):
    import argparse

    ap = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0] if doc else None)
    ap.add_argument("--quick", action="store_true", help="small sizes (about a minute on CPU)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    return ap


def run_and_report(run, args) -> None:
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("bench: --device cuda needs a CUDA GPU and a CUDA build of torch; "
                             "use --device cpu here")
    report(run(args.quick, args.device), args.device)


def main_for(run, doc: str | None) -> None:
    """The whole command line of a bench_<area>.py: --quick, --device, run, report."""
    run_and_report(run, bench_parser(doc).parse_args())
