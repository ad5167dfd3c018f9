"""``fp.generate``: HF ``generate`` semantics and output layout on the shared-prefix engine."""
from __future__ import annotations

import torch

from fastpass.engine.sampler import Sampler


def _prompts_from_batch(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[list[int]]:
    prompts = []
    for i in range(input_ids.shape[0]):
        mask = attention_mask[i].bool()
        n = int(mask.sum())
        if n == 0:
            raise ValueError(f"row {i} of attention_mask is all zeros: every prompt needs at least one token")
        if not bool(mask[-n:].all()):
            raise ValueError(f"row {i} is not left-padded (attention_mask has zeros after ones): pad on the left, "
                             "e.g. tokenizer.padding_side = 'left'")
        prompts.append(input_ids[i, -n:].tolist())
    return prompts


def generate(model, input_ids, attention_mask=None, num_return_sequences: int = 1, max_new_tokens=None,
             do_sample: bool = True, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
             min_p: float = 0.0, eos_token_id=None, seed=None, repetition_penalty: float = 1.0) -> torch.Tensor:
    """Sample like ``model.generate(input_ids, attention_mask, num_return_sequences=K, ...)``.

    Accepts HF's left-padded batches and returns LongTensor [B*K, L + new] in repeat_interleave
    order, padded after EOS with the pad id (the generation config's, else the first EOS id). The
    prompt is prefilled once per row and its KV shared by its K samples. ``do_sample=False`` or
    ``temperature=0`` is greedy; ``seed=None`` draws one from torch's global generator;
    ``repetition_penalty`` is HF's (over prompt and generated tokens)."""
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
        raise TypeError("input_ids must be a 2-D LongTensor [batch, length] (tokenizer(..., return_tensors='pt'))")
    if input_ids.shape[1] == 0:
        raise ValueError("input_ids has no tokens: every prompt needs at least one token")
    gen_cfg = getattr(model, "generation_config", None)
    pad = getattr(gen_cfg, "pad_token_id", None)
    if attention_mask is None:
        eos_cfg = getattr(gen_cfg, "eos_token_id", None)
        eos_list = eos_cfg if isinstance(eos_cfg, (list, tuple)) else [eos_cfg]
        if pad is not None and pad not in eos_list and bool((input_ids == pad).any()):
            attention_mask = input_ids.ne(pad)  # what HF infers
        else:
            attention_mask = torch.ones_like(input_ids)
    elif attention_mask.shape != input_ids.shape:
        raise ValueError(f"attention_mask shape {tuple(attention_mask.shape)} differs from input_ids "
                         f"{tuple(input_ids.shape)}: pass the mask the tokenizer returned")
    if max_new_tokens is None:
        max_new_tokens = getattr(gen_cfg, "max_new_tokens", None) or 20
    if seed is None:
        seed = int(torch.randint(0, 2**62, ()).item())
    prompts = _prompts_from_batch(input_ids.cpu(), attention_mask.cpu())
    batch, padded = Sampler(model).sample_padded(
        prompts, n=num_return_sequences, max_new_tokens=max_new_tokens,
        temperature=temperature if do_sample else 0.0, top_k=top_k, top_p=top_p, min_p=min_p, seed=seed,
        eos_token_id=eos_token_id, repetition_penalty=repetition_penalty)
    new = int(batch.lengths.max())
    b, k = padded.shape[:2]
    out = torch.cat([input_ids.cpu().repeat_interleave(k, 0), padded[:, :, :new].reshape(b * k, new)], 1)
    return out.to(input_ids.device)
