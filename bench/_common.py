"""Shared benchmark plumbing: timing, environment stamp, markdown table, results.csv."""
from __future__ import annotations

import contextlib
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


def best_interleaved(fns: dict, reps: int = 7, warmup: int = 1, cpu: dict | None = None) -> dict:
    """Best (minimum) CPU wall seconds of each named fn over ``reps`` rounds that run every fn once,
    in turn: on a shared machine the load drifts, and interleaving exposes each side to the same drift.
    ``cpu``: a dict to fill with each fn's best process CPU seconds over the same rounds (for
    one-thread code, its cost per core whatever share of the cores other processes take)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    best = {name: float("inf") for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
            if cpu is not None:
                cpu[name] = min(cpu.get(name, float("inf")), time.process_time() - c0)
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


def _fmt_row(r: dict) -> str:
    unit = r.get("unit", "")
    fmt = lambda v: "-" if v is None else (f"{v:.4g} {unit}" if isinstance(v, float) else str(v))
    ratio, roof = r.get("ratio"), r.get("roofline_frac")
    return (f"| {r['bench']} | {r['case']} | {fmt(r.get('fastpass'))} | {r.get('baseline_name', '-')} | "
            f"{fmt(r.get('baseline'))} | {'-' if ratio is None else f'{ratio:.2f}x'} | "
            f"{'-' if roof is None else f'{100 * roof:.0f}%'} | {r.get('note', '')} |")


def _header(env: dict) -> list[str]:
    return [f"device: {env['device']} | date {env['date']} | commit {env['commit']} | torch "
            f"{env['torch']} | triton {env['triton']} | transformers {env['transformers']}", "",
            "| bench | case | fastpass | baseline | baseline value | ratio | roofline | note |",
            "|---|---|---|---|---|---|---|---|"]


def _append_csv(path: Path, env: dict, rows: list[dict]) -> None:
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS, extrasaction="ignore")
        if new:
            w.writeheader()
        for r in rows:
            w.writerow({**env, **r})
        fh.flush()
        os.fsync(fh.fileno())  # a bench killed at its time limit keeps every finished row


class _Sink:
    """Where rows go while a bench runs from the command line: printed as table lines and appended
    to the CSV the moment each case finishes (``Rows.append``), not at the end of the run."""

    def __init__(self, device: str, csv_path: Path | None):
        self.env = env_info(device)
        self.csv_path = csv_path
        self.done: set[int] = set()  # id() of rows already printed and written
        self.header = False

    def emit(self, rows: list[dict]) -> None:
        rows = [r for r in rows if id(r) not in self.done]
        if not rows:
            return
        if not self.header:
            print("\n".join(_header(self.env)), flush=True)
            self.header = True
        for r in rows:
            print(_fmt_row(r), flush=True)
        if self.csv_path is not None:
            _append_csv(self.csv_path, self.env, rows)
        self.done.update(id(r) for r in rows)


_SINK: _Sink | None = None


class Rows(list):
    """The list a bench's ``run`` returns. Under :func:`recording` (the command-line runners) every
    row added is printed and appended to the CSV at once, so a run stopped at a time limit still
    has each finished case; outside it, a plain list."""

    def append(self, row: dict) -> None:
        super().append(row)
        if _SINK is not None:
            _SINK.emit([row])

    def extend(self, rows) -> None:
        rows = list(rows)
        super().extend(rows)
        if _SINK is not None:
            _SINK.emit(rows)

    def __iadd__(self, rows):
        self.extend(rows)
        return self


@contextlib.contextmanager
def recording(device: str = "cpu", csv_path: Path | str | None = RESULTS_CSV):
    """Rows added to any ``Rows`` inside the block are printed and written as they come;
    ``csv_path=None`` prints only. Yields the sink (``report`` finishes what it did not write)."""
    global _SINK
    saved = _SINK
    _SINK = _Sink(device, None if csv_path is None else Path(csv_path))
    try:
        yield _SINK
    finally:
        _SINK = saved


def time_left() -> float:
    """Seconds until ``FASTPASS_BENCH_DEADLINE`` (epoch seconds, set by gpu_check.sh for each step),
    inf when unset: benches skip optional repetitions that would not finish before their time limit."""
    deadline = os.environ.get("FASTPASS_BENCH_DEADLINE")
    return float(deadline) - time.time() if deadline else float("inf")


def report(rows: list[dict], device: str = "cpu", write_csv: bool = True, csv_path: Path | str | None = None,
           sink: _Sink | None = None) -> str:
    """Print rows as a markdown table and append them to ``csv_path`` (default bench/results.csv).

    Each row: bench, case, fastpass, baseline_name, baseline, unit, and optionally ratio
    (baseline / fastpass for times), roofline_frac, note. Rows that ``sink`` already printed and
    wrote while the bench ran (``Rows`` under ``recording``) are not printed or written again."""
    env = sink.env if sink is not None else env_info(device)
    done = sink.done if sink is not None else set()
    todo = [r for r in rows if id(r) not in done]
    lines = [] if sink is not None and sink.header else _header(env)
    lines += [_fmt_row(r) for r in todo]
    text = "\n".join(lines)
    if todo or not (sink is not None and sink.header):
        print(text, flush=True)
    if write_csv and todo:
        _append_csv(Path(csv_path) if csv_path is not None else RESULTS_CSV, env, todo)
    return text


def bench_parser(doc: str | None):
    import argparse

    ap = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0] if doc else None)
    ap.add_argument("--quick", action="store_true", help="small sizes (about a minute on CPU)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--csv", metavar="FILE", help="append rows to FILE instead of bench/results.csv")
    return ap


def run_and_report(run, args, csv_path: Path | str | None = None, **kw) -> list[dict]:
    """``run(quick, device, **kw)`` with each row printed and appended to the CSV as it finishes."""
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("bench: --device cuda needs a CUDA GPU and a CUDA build of torch; "
                             "use --device cpu here")
    target = RESULTS_CSV if csv_path is None else Path(csv_path)
    with recording(args.device, target) as sink:
        rows = run(args.quick, args.device, **kw)
        report(rows, args.device, csv_path=target, sink=sink)
    return rows


def main_for(run, doc: str | None) -> None:
    """The whole command line of a bench_<area>.py: --quick, --device, run, report."""
    args = bench_parser(doc).parse_args()
    run_and_report(run, args, csv_path=args.csv)
