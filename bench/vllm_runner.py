"""Runs one generation job on vLLM and writes what it measured; executed by vLLM's own interpreter
(bench/.venv-vllm, built by bench/vllm_env.sh), in its own process, never imported by fastpass.

    python bench/vllm_runner.py JOB.json RESULT.json

JOB (written by bench/vllm_baseline.py): model (an HF folder), prompts (token-id lists), n,
max_tokens, min_tokens, temperature, top_k (0 = off), top_p, ignore_eos, stop_token_ids (the EOS
set when EOS is on), dtype, max_model_len, seed, reps, warmup. RESULT: vllm and torch versions,
init_s, wall_s (one per rep: the whole ``generate`` call), and for the last rep the per-sample
lengths, finish reasons and last tokens (so the caller can check EOS handling); or ``error``.
Only this file's own standard library and vLLM are imported: it must run in vLLM's venv."""
from __future__ import annotations

import json
import os
import sys
import time
import traceback


def _params(vllm, job: dict, n: int, max_tokens: int, min_tokens: int):
    kw = dict(n=n, max_tokens=max_tokens, min_tokens=min_tokens, temperature=float(job["temperature"]),
              top_p=float(job.get("top_p", 1.0)), ignore_eos=bool(job["ignore_eos"]), detokenize=False)
    if job.get("top_k", 0) > 0:  # vLLM's default considers every token, like top_k=0 elsewhere
        kw["top_k"] = int(job["top_k"])
    if job.get("stop_token_ids"):
        kw["stop_token_ids"] = [int(t) for t in job["stop_token_ids"]]
    return vllm.SamplingParams(**kw)


def run(job: dict) -> dict:
    t0 = time.perf_counter()
    import vllm

    llm = vllm.LLM(model=job["model"], skip_tokenizer_init=True, dtype=job.get("dtype", "auto"),
                   enable_prefix_caching=True, max_model_len=int(job["max_model_len"]), seed=int(job.get("seed", 0)),
                   **job.get("llm_kwargs", {}))
    prompts = [{"prompt_token_ids": [int(t) for t in p]} for p in job["prompts"]]
    if job.get("warmup", True):  # first-call compilation and allocation stay out of the timing
        llm.generate(prompts[:1], _params(vllm, job, 2, 4, 0), use_tqdm=False)
    init_s = time.perf_counter() - t0
    walls, outs = [], None
    for _ in range(int(job.get("reps", 1))):
        t = time.perf_counter()
        outs = llm.generate(prompts, _params(vllm, job, int(job["n"]), int(job["max_tokens"]),
                                             int(job.get("min_tokens", 0))), use_tqdm=False)
        walls.append(time.perf_counter() - t)
    lengths, reasons, last = [], [], []
    for o in outs:
        comps = sorted(o.outputs, key=lambda c: c.index)
        lengths.append([len(c.token_ids) for c in comps])
        reasons.append([str(c.finish_reason) for c in comps])
        last.append([int(c.token_ids[-1]) if len(c.token_ids) else -1 for c in comps])
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:  # a stand-in vllm in the tests
        torch_version = None
    return {"vllm": getattr(vllm, "__version__", "?"), "torch": torch_version, "init_s": init_s, "wall_s": walls,
            "lengths": lengths, "finish_reasons": reasons, "last_tokens": last,
            "threads_env": {k: v for k, v in os.environ.items() if k.startswith(("VLLM_CPU", "OMP_"))}}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python bench/vllm_runner.py JOB.json RESULT.json", file=sys.stderr)
        return 2
    job = json.loads(open(argv[0]).read())
    try:
        result = run(job)
    except Exception as exc:  # noqa: BLE001 - the caller turns any failure into the row's note
        result = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300],
                  "traceback": traceback.format_exc()[-4000:]}
    with open(argv[1] + ".tmp", "w") as fh:
        json.dump(result, fh)
    os.replace(argv[1] + ".tmp", argv[1])
    return 0 if "error" not in result else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
