"""Batch planning: split (prompt, samples) work into chunks that fit memory, run them, and on CUDA
out-of-memory split the failing chunk in two and retry (finished chunks are kept)."""
from __future__ import annotations

import os
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


# ---------------------------------------------------------------------------- continuous batching
CPU_ROWS = 128  # decode rows on CPU: the packed GEMMs run ~25% faster at 128 rows than at 64 (RESULTS.md)
# resident prompts per (rows / n): a prompt keeps its slot until its last sample ends, so on a
# long-tailed job it holds rows / n x (its longest sample / the mean one) rows on average
SLOTS_PER_ROW_SHARE = 4


def _slot_bytes(adapter, prefix_capacity: int) -> int:
    """A resident prompt: its KV once and its last-position logits (fp32)."""
    return adapter.kv_bytes_per_token() * prefix_capacity + adapter.vocab_size * 4


def _host_budget() -> int | None:
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") * 0.5)
    except (ValueError, OSError, AttributeError):
        return None


def plan_continuous(adapter, prompts: list[list[int]], n: int, max_new_tokens: int, max_rows: int | None = None,
                    budget: int | None = None, penalty: bool = False) -> tuple[int, int]:
    """(decode rows, prompt slots) for a continuous run that fits ``budget`` bytes (default: the
    GPU's free memory, or half the host's available memory on CPU)."""
    total = len(prompts) * n
    cuda = adapter.device.type == "cuda"
    rows = min(total, max_rows or (GPU_MAX_ROWS if cuda else CPU_ROWS))
    if budget is None:
        budget = memory_budget(adapter) if cuda else _host_budget()
    per_row = _row_bytes(adapter, max_new_tokens) + (adapter.vocab_size if penalty else 0)
    per_slot = _slot_bytes(adapter, max(len(p) for p in prompts))

    def slots_for(r):
        return min(len(prompts), max(2, SLOTS_PER_ROW_SHARE * -(-r // n)))

    while budget is not None and rows > 1 and rows * per_row + slots_for(rows) * per_slot > budget:
        rows //= 2
    return rows, slots_for(rows)


def run_continuous(adapter, items: list[ChunkItem], n: int, params: DecodeParams, rows: int, slots: int,
                   stats: dict, on_samples=None):
    """Yields a PromptResult per prompt as its samples finish. On CUDA out-of-memory the decoder is
    rebuilt with half the rows and only the samples not yet drawn are decoded again (keyed draws:
    the same tokens)."""
    from fastpass.engine.scheduler import ContinuousDecoder

    results: dict = {}
    completed = set()
    stats.update(oom_splits=0, rows=rows, slots=slots)
    while True:
        decoder = ContinuousDecoder(adapter, items, n, params, rows, slots, results)
        decoder.on_samples = on_samples
        try:
            for res in decoder.run():
                completed.add(res.index)
                yield res
            break
        except torch.cuda.OutOfMemoryError:
            if rows <= 1:
                raise
        del decoder
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        by_index = {it.index: it for it in items if it.index not in completed}
        items = [ChunkItem(it.prompt, it.stream_id, first, count, it.index)
                 for it in by_index.values()
                 for first, count in _missing(results.get(it.index), n)]
        rows, slots = max(1, rows // 2), max(1, slots // 2)
        stats["oom_splits"] += 1
    for key in ("steps", "refills", "prefills", "graph", "row_steps", "live_row_steps", "slot_starved", "threads"):
        stats[key] = decoder.stats.get(key)
    stats["rows"] = rows


def _missing(result, n):
    return [(0, n)] if result is None else result.missing()
