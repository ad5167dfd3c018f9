"""`fastpass screen`: screen a model on a problem file (or the embedded default) and write
samples.jsonl, report.json, report.md and passk.png."""
from __future__ import annotations

import argparse
import os
import sys

DEFAULT_OUT = "fastpass-screen"


def _ks(text: str) -> list[int]:
    """--k is parsed here, not by argparse's type=, so a bad value gets fastpass's own one line."""
    from fastpass.screen.errors import ScreenError

    try:
        ks = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        ks = []
    if not ks:
        raise ScreenError(f"--k takes comma-separated positive integers like 1,4,16, got {text!r}")
    return ks


def _saved(out: str) -> int:
    """Finished problems on disk in ``out`` (complete lines of every samples file)."""
    from fastpass.screen.distributed import sample_files

    count = 0
    for path in sample_files(out) if os.path.isdir(out) else []:
        try:
            with open(path, "rb") as fh:
                count += fh.read().count(b"\n")
        except OSError:
            pass
    return count


def _interrupted(out: str) -> int:
    saved = _saved(out)
    if saved:
        print(f"fastpass: interrupted ({saved} finished problem{'s' if saved != 1 else ''} saved in {out}; rerun "
              "with --resume to continue)", file=sys.stderr)
    else:
        print("fastpass: interrupted before any problem finished (nothing saved yet; rerun the same command to "
              "start again)", file=sys.stderr)
    return 130


def _reach(text: str) -> tuple[float, float]:
    from fastpass.fate import check_reach

    try:
        return check_reach(float(x) for x in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _gamma(args):
    """--gamma, or the calibration --gamma-from names (checked before the model loads)."""
    if args.gamma_from is None:
        return 0.7 if args.gamma is None else args.gamma
    if args.gamma is not None:
        raise ValueError("give --gamma or --gamma-from, not both")
    from fastpass.calibration import load_calibration

    return load_calibration(args.gamma_from)


def _free_cores(default: int) -> int:
    """Threads for a CPU run: the cores other processes leave free (1-minute load average). Busy
    intra-op threads on a shared machine spin against other jobs: measured on 2 shared cores at
    load ~6, the embedded default ran 5x faster with 1 thread than with 2."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return default
    return max(1, min(default, (os.cpu_count() or 1) - int(round(load))))


def add_parser(sub) -> None:
    p = sub.add_parser(
        "screen", help="pass@K screen of a model: curve, elicitation gap, predicted post-RL pass@1, GO/SKIP",
        description="Samples n completions per problem with fastpass's shared-prefix sampler, grades them, "
                    "and writes samples.jsonl, report.json, report.md and passk.png. With no --model and "
                    "no --data it screens the embedded SmolLM2-135M-Instruct on a generated problem set. "
                    "Data parallel: torchrun --nproc_per_node N -m fastpass screen ... shards the problems "
                    "across ranks (one GPU each) and rank 0 merges the results.")
    p.add_argument("--model", help="local model folder or cached hub id (default: embedded SmolLM2-135M-Instruct)")
    p.add_argument("--gguf", metavar="FILE", help="GGUF file inside --model's folder")
    p.add_argument("--data", metavar="FILE.jsonl", help="problems, one JSON object per line; - reads standard "
                   "input (default: the embedded set)")
    p.add_argument("--preset", choices=["r1", "gsm8k", "boxed", "math", "default"],
                   help="template + grading rule (default: guessed from the data; 'default' for the embedded set)")
    p.add_argument("--question-field", metavar="F", help="field holding the question (default: the preset's "
                   "first of question/problem/prompt found in the first row)")
    p.add_argument("--answer-field", metavar="F", help="field holding the gold answer (default: the first of "
                   "answer/solution/target found in the first row)")
    p.add_argument("--pattern", metavar="REGEX", help="answer regex with one capture group (default: the preset's)")
    p.add_argument("--limit", type=int, metavar="N", help="screen only the first N problems")
    p.add_argument("-n", "--n-samples", type=int, dest="n", help="samples per problem (default 128; 16 for the "
                   "embedded default)")
    p.add_argument("--k", dest="ks", metavar="K1,K2,...", help="k values to report (default 1,4,16,64,128 "
                   "up to n)")
    p.add_argument("--max-new-tokens", type=int, metavar="N", help="most tokens generated per sample (default "
                   "512; 16 for the embedded default); a sample also ends at EOS or once its answer closes")
    p.add_argument("--temperature", type=float, default=1.0, metavar="T", help="sampling temperature (default "
                   "1.0, the model's own distribution; 0 = greedy)")
    p.add_argument("--top-p", type=float, default=1.0, metavar="P", help="nucleus sampling: keep the smallest "
                   "set of tokens with probability mass >= P (default 1.0 = off)")
    p.add_argument("--top-k", type=int, default=0, metavar="K", help="keep only the K most likely tokens "
                   "(default 0 = off)")
    p.add_argument("--min-p", type=float, default=0.0, metavar="P", help="drop tokens less likely than P times "
                   "the most likely one (default 0.0 = off)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed, 0 <= S < 2**64 (default 0); "
                   "sample j of problem i depends only on (S, i, j), so resumed and sharded runs repeat it")
    p.add_argument("--gamma", type=float, help="share of the gap RL closes (default: the planning value 0.7)")
    p.add_argument("--gamma-from", metavar="FILE", help="gamma fitted to your past RL runs: a calibration file "
                   "written by fastpass calibrate")
    p.add_argument("--reach", type=_reach, metavar="LO,HI", default=(0.05, 0.40),
                   help="p1 band called 'within reach' in the fate table (default 0.05,0.40)")
    p.add_argument("--k-train", type=int, default=64, metavar="K", help="samples per prompt in the RL run (its "
                   "group size), for the prediction (default 64)")
    p.add_argument("--out", metavar="DIR", default=DEFAULT_OUT, help=f"output folder (default ./{DEFAULT_OUT}); "
                   "locked while a run uses it")
    p.add_argument("--resume", action="store_true", help="continue the run in --out, skipping finished problems")
    p.add_argument("--save-completions", action="store_true", help="keep every completion in samples.jsonl")
    p.add_argument("--no-chat-template", action="store_true", help="plain-text prompts even if the tokenizer "
                   "has a chat template")
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"], default="auto",
                   help="default: bfloat16 on GPU, float32 on CPU")
    p.add_argument("--device", default="auto", help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads for torch, per process (default: the "
                   "cores the load average leaves free, split between torchrun's ranks, at least 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    try:
        return _run(args)
    except KeyboardInterrupt:  # the message says what exists on disk, not what might
        return _interrupted(args.out)


def _run(args) -> int:
    from fastpass.screen.default_set import DEFAULT_MAX_NEW_TOKENS, DEFAULT_N
    from fastpass.screen.distributed import check_out_dir, hold_out_dir
    from fastpass.screen.distributed import init as init_ranks
    from fastpass.screen.loading import check_model_source, load_model
    from fastpass.screen.pipeline import DEFAULT_KS, check_settings, prepare, screen
    from fastpass.screen.problems import read_problem_file

    embedded_set = args.data is None
    n = args.n if args.n is not None else (DEFAULT_N if embedded_set else 128)
    max_new = args.max_new_tokens if args.max_new_tokens is not None else (
        DEFAULT_MAX_NEW_TOKENS if embedded_set else 512)
    ks = _ks(args.ks) if args.ks is not None else DEFAULT_KS
    # every check that needs no model runs first: a bad flag, file or folder fails in a second
    gamma = _gamma(args)
    check_settings(n, ks, args.temperature, args.top_p, args.top_k, args.min_p, max_new, seed=args.seed,
                   gamma=gamma, K_train=args.k_train)
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    check_model_source(args.model, args.gguf)
    data = read_problem_file(args.data) if args.data is not None else None  # once: '-' is standard input
    prepare(data, args.preset, args.pattern, question_field=args.question_field,
            answer_field=args.answer_field, limit=args.limit)
    check_out_dir(args.out, args.resume)
    import torch

    shard, device = init_ranks(args.device)  # one shard unless launched by torchrun
    progress = not args.no_progress and shard.rank == 0
    threads_before = torch.get_num_threads()
    if device == "cpu":  # --threads is per process; by default the ranks on a node split the free cores
        torch.set_num_threads(args.threads or max(1, _free_cores(threads_before) // shard.local_world_size))
    lock = None
    try:
        lock = hold_out_dir(args.out, shard)  # before the model loads: a busy folder fails at once
        model, tokenizer, name = load_model(args.model, args.gguf, args.dtype, device, progress=progress,
                                            max_new_tokens=max_new)
        rep = screen(model, tokenizer, data, n_samples=n, ks=ks, pattern=args.pattern, max_new_tokens=max_new,
                     seed=args.seed, out_dir=args.out, resume=args.resume, progress=progress,
                     preset=args.preset, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                     min_p=args.min_p, chat_template=not args.no_chat_template,
                     save_completions=args.save_completions, question_field=args.question_field,
                     answer_field=args.answer_field, limit=args.limit, gamma=gamma, K_train=args.k_train,
                     reach=args.reach, model_name=name, shard=shard)
    except KeyboardInterrupt as exc:
        shard.fail(exc)
        raise
    except Exception as exc:
        shard.fail(exc)  # the other ranks stop instead of waiting for this one
        if not shard.distributed or os.environ.get("FASTPASS_DEBUG"):
            raise
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"fastpass: error: rank {shard.rank}/{shard.world_size}: {type(exc).__name__}: {msg}", file=sys.stderr)
        return 2
    finally:
        if lock is not None:
            lock.release()
        torch.set_num_threads(threads_before)  # in-process callers (tests, notebooks) keep their setting
        shard.close()
    if rep is None:  # a rank other than 0: rank 0 merged its samples and prints the verdict
        return 0
    v = rep.verdict
    print(f"{v.decision}: pass@1 {v.pass1:.3f} -> predicted {v.expected_pass1:.3f} after RL "
          f"(gamma {rep.prediction.gamma}, gap pass@{v.kmax} - pass@1 = {v.gap:.3f}); "
          f"{len(rep.ids)} problems x n={int(rep.n.min())}; "
          f"{rep.throughput.get('tokens_per_s', 0):.0f} tok/s. Reports in {args.out}/", file=sys.stdout)
    u = v.uncertainty or {}
    if u.get("reasons"):  # INCONCLUSIVE: say why and what would decide, not only in report.md
        print("  why: " + "; ".join(u["reasons"]), file=sys.stdout)
        print("  to decide: " + "; ".join(u["to_decide"]), file=sys.stdout)
    return 0
