"""vLLM as an e2e baseline: ``n=K`` samples per prompt with automatic prefix caching on, random
(dummy) weights of the same config, no tokenizer, EOS ignored so it makes the same token count.

vLLM stores a shared prompt once too (prefix caching) but reads it once per sequence at every
step; fastpass reads it once per prompt. Any failure (missing package, no memory left beside the
other models of the run) becomes the row's note instead of stopping the benchmark."""
from __future__ import annotations

import gc
import shutil
import tempfile
import time


def _sampling_params(vllm, k, new_tokens):
    return vllm.SamplingParams(n=k, max_tokens=new_tokens, min_tokens=new_tokens, ignore_eos=True,
                               temperature=1.0, top_p=1.0, seed=0, detokenize=False)


def tokens_per_s(model, ids, k: int, new_tokens: int, gpu_memory_utilization: float = 0.45,
                 reps: int = 1) -> tuple[float | None, str]:
    """(tokens/s or None, note) for ``ids`` [P, L] x ``k`` samples x ``new_tokens`` on vLLM."""
    try:
        import vllm
    except ImportError:
        return None, "vLLM: not installed (pip install vllm to measure it as a baseline)"
    tmp = tempfile.mkdtemp(prefix="fastpass-vllm-")
    llm = None
    try:
        model.config.save_pretrained(tmp)  # config only: the dummy loader draws random weights
        dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
        llm = vllm.LLM(model=tmp, skip_tokenizer_init=True, load_format="dummy", dtype=dtype,
                       enable_prefix_caching=True, gpu_memory_utilization=gpu_memory_utilization,
                       max_model_len=ids.shape[1] + new_tokens + 8, seed=0)
        prompts = [{"prompt_token_ids": row} for row in ids.tolist()]
        llm.generate(prompts[:1], _sampling_params(vllm, 2, 4), use_tqdm=False)  # warm-up
        best, made = float("inf"), 0
        for _ in range(reps):
            t0 = time.perf_counter()
            outs = llm.generate(prompts, _sampling_params(vllm, k, new_tokens), use_tqdm=False)
            best = min(best, time.perf_counter() - t0)
            made = sum(len(c.token_ids) for o in outs for c in o.outputs)
        expected = ids.shape[0] * k * new_tokens
        if made != expected:
            return None, f"vLLM made {made} tokens, expected {expected}: not comparable"
        return made / best, f"vLLM {getattr(vllm, '__version__', '?')}, n=K, prefix caching on, dummy weights"
    except Exception as exc:  # noqa: BLE001 - a baseline failure is reported, the bench goes on
        return None, f"vLLM failed: {type(exc).__name__}: {str(exc)[:120]}"
    finally:
        del llm
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:  # noqa: BLE001
            pass
        shutil.rmtree(tmp, ignore_errors=True)
