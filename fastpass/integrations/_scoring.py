"""Log-likelihood of token continuations through a causal LM's own forward, batched.

Token boundaries follow lm-eval's HFLM: the model reads ``(context + continuation)[:-1]``
(left-truncated to ``max_length``) and the last ``len(continuation)`` positions score the
continuation. Rows whose model input is identical (multiple-choice answers of one token share
their context) run once."""
from __future__ import annotations

import inspect

import torch


def _forward_keeps_logits(model) -> bool:
    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def model_inputs(pairs, max_length: int) -> list[tuple[list[int], list[int]]]:
    """(model input ids, continuation ids) per (context, continuation) pair."""
    out = []
    for i, (ctx, cont) in enumerate(pairs):
        ctx, cont = list(ctx), list(cont)
        if not ctx:
            raise ValueError(f"request {i} has an empty context: give at least one token (BOS/EOS)")
        if not cont:
            raise ValueError(f"request {i} has an empty continuation: nothing to score")
        if len(cont) > max_length:
            raise ValueError(f"request {i}: continuation of {len(cont)} tokens exceeds max_length={max_length}: "
                             "raise max_length or shorten the continuation")
        out.append(((ctx + cont)[-(max_length + 1):][:-1], cont))
    return out


def _batches(order, lengths, batch_size: int, max_batch_tokens: int):
    """Rows sorted longest first; a batch grows while rows x longest length fits the budget."""
    batch = []
    for idx in order:
        longest = lengths[batch[0]] if batch else lengths[idx]
        if batch and (len(batch) >= batch_size or (len(batch) + 1) * longest > max_batch_tokens):
            yield batch
            batch = []
        batch.append(idx)
    if batch:
        yield batch


@torch.inference_mode()
def score_continuations(model, pairs, max_length: int, batch_size: int = 32,
                        max_batch_tokens: int = 8192) -> list[tuple[float, bool]]:
    """``[(sum log p(continuation | context), continuation is the greedy decode)]`` per pair."""
    rows = model_inputs(pairs, max_length)
    unique: dict[tuple[int, ...], int] = {}
    row_of = [unique.setdefault(tuple(inp), len(unique)) for inp, _ in rows]
    inputs = list(unique)
    # the earliest position any request on this input scores: logits before it are not needed
    first_scored = [len(inp) for inp in inputs]
    for (inp, cont), u in zip(rows, row_of):
        first_scored[u] = min(first_scored[u], len(inp) - len(cont))
    lengths = [len(inp) for inp in inputs]
    order = sorted(range(len(inputs)), key=lambda u: -lengths[u])
    device = next(model.parameters()).device
    keep_logits = _forward_keeps_logits(model)
    logprobs_of: dict[int, tuple[torch.Tensor, int]] = {}  # unique input -> (log-probs [keep, V], offset)
    results: list[tuple[float, bool] | None] = [None] * len(rows)
    users: dict[int, list[int]] = {}
    for r, u in enumerate(row_of):
        users.setdefault(u, []).append(r)
    for batch in _batches(order, lengths, max(1, int(batch_size)), max(1, int(max_batch_tokens))):
        width = lengths[batch[0]]
        ids = torch.zeros(len(batch), width, dtype=torch.long)
        mask = torch.zeros(len(batch), width, dtype=torch.long)
        for b, u in enumerate(batch):
            ids[b, :lengths[u]] = torch.tensor(inputs[u])
            mask[b, :lengths[u]] = 1
        keep = width - min(first_scored[u] for u in batch)
        kwargs = {"logits_to_keep": keep} if keep_logits else {}
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False, **kwargs).logits
        logits = logits[:, -keep:].float().log_softmax(-1)
        for b, u in enumerate(batch):
            logprobs_of[u] = (logits[b], width - keep)
        for u in batch:
            lp, offset = logprobs_of.pop(u)
            for r in users[u]:
                inp, cont = rows[r]
                start = len(inp) - len(cont) - offset
                span = lp[start:start + len(cont)]
                target = torch.tensor(cont, device=span.device)
                total = float(span.gather(1, target[:, None]).sum())
                results[r] = (total, bool((span.argmax(-1) == target).all()))
    return results
