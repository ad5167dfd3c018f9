"""Batch planning: split (prompt, samples) work into chunks that fit memory, run them, and on CUDA
out-of-memory split the failing chunk in two and retry (finished chunks are kept)."""
from __future__ import annotations

from collections import deque

import torch

from fastpass.engine.decode_loop import ChunkDecoder, ChunkItem, DecodeParams

CPU_MAX_ROWS = 256
GPU_MAX_ROWS = 2048
GPU_MEMORY_FRACTION = 0.85


def _row_bytes(adapter, suffix_capacity: int) -> int:
    """Device bytes one sample needs during decode: its suffix KV, logits and sampler temporaries,
    and per-token activations (a generous bound: a few hidden/intermediate vectors per layer pass)."""
    t = adapter.text_config
    elem = torch.finfo(adapter.dtype).bits // 8
    inter = getattr(t, "intermediate_size", 4 * t.hidden_size)
    act = (8 * t.hidden_size + 3 * inter) * elem
    return adapter.kv_bytes_per_token() * suffix_capacity + adapter.vocab_size * 16 + act


def memory_budget(adapter) -> int | None:
    """Bytes available for KV and activations on the model's GPU, None on CPU (no limit planned)."""
    if adapter.device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(adapter.device)
    return int(free * GPU_MEMORY_FRACTION)


def plan_chunks(adapter, prompts: list[list[int]], n: int, stream_ids: list[int], max_new_tokens: int,
                budget: int | None = None, max_rows: int | None = None) -> list[list[ChunkItem]]:
    """Greedy packing of prompts (and, if one prompt's n samples do not fit, ranges of its samples)
    into chunks: weights are already resident, each chunk holds its prompts' KV once plus
    per-sample suffix KV."""
    if max_rows is None:
        max_rows = GPU_MAX_ROWS if adapter.device.type == "cuda" else CPU_MAX_ROWS
    per_row = _row_bytes(adapter, max(1, max_new_tokens - 1))
    per_tok = adapter.kv_bytes_per_token()
    chunks, cur, cur_rows, cur_bytes = [], [], 0, 0
    for i, prompt in enumerate(prompts):
        first = 0
        while first < n:
            prompt_bytes = per_tok * len(prompt)
            room_rows = max_rows - cur_rows
            if budget is not None:
                room_rows = min(room_rows, (budget - cur_bytes - prompt_bytes) // per_row)
            if room_rows <= 0:
                if not cur:
                    room_rows = 1  # one sample always gets a try; OOM handling splits further
                else:
                    chunks.append(cur)
                    cur, cur_rows, cur_bytes = [], 0, 0
                    continue
            count = min(n - first, room_rows)
            cur.append(ChunkItem(prompt, stream_ids[i], first, count, index=i))
            cur_rows += count
            cur_bytes += prompt_bytes + count * per_row
            first += count
    if cur:
        chunks.append(cur)
    return chunks


def _split(chunk: list[ChunkItem]) -> list[list[ChunkItem]]:
    if len(chunk) > 1:
        half = len(chunk) // 2
        return [chunk[:half], chunk[half:]]
    it = chunk[0]
    half = it.count // 2
    return [[ChunkItem(it.prompt, it.stream_id, it.first_sample, half, it.index)],
            [ChunkItem(it.prompt, it.stream_id, it.first_sample + half, it.count - half, it.index)]]


def run_chunks(adapter, chunks: list[list[ChunkItem]], num_prompts: int, n: int, params: DecodeParams,
               on_chunk=None):
    """Run every chunk; returns (tokens int64 [P, n, max_new], lengths [P, n], reasons [P, n], stats)."""
    tokens = torch.full((num_prompts, n, params.max_new_tokens), params.pad_id, dtype=torch.int64)
    lengths = torch.zeros(num_prompts, n, dtype=torch.int64)
    reasons = torch.zeros(num_prompts, n, dtype=torch.int64)
    stats = {"chunks": 0, "oom_splits": 0, "graph_chunks": 0, "compactions": 0}
    queue = deque(chunks)
    while queue:
        chunk = queue.popleft()
        res = None
        try:
            res = ChunkDecoder(adapter, chunk, params).run()
        except torch.cuda.OutOfMemoryError:
            if sum(it.count for it in chunk) <= 1:
                raise
        if res is None:  # out of memory: the failed chunk's tensors are released once the except ends
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            queue.extendleft(reversed(_split(chunk)))
            stats["oom_splits"] += 1
            continue
        row = 0
        for it in chunk:
            sl = slice(it.first_sample, it.first_sample + it.count)
            tokens[it.index, sl] = res.tokens[row:row + it.count]
            lengths[it.index, sl] = res.lengths[row:row + it.count]
            reasons[it.index, sl] = res.reasons[row:row + it.count]
            row += it.count
        stats["chunks"] += 1
        stats["graph_chunks"] += int(res.stats.get("graph", False))
        stats["compactions"] += res.stats.get("compactions", 0)
        stats["threads"] = res.stats.get("threads")
        if on_chunk is not None:
            on_chunk(chunk)
    return tokens, lengths, reasons, stats
