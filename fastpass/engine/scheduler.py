"""Continuous batching: a fixed set of decode rows stays busy until the last sample is drawn.

Each prompt is prefilled once into a prefix slot; its samples run on decode rows. When a sample
ends (EOS, stop regex, length) its row takes the next pending sample — of a resident prompt, or
of the next prompt, prefilled into a free slot between decode steps. Row state lives in device
tensors indexed by storage row; the batch is a permutation of live rows grouped by slot, so the
split attention reads each prefix once per step while every suffix stays where it was written.
Sample j of a prompt draws step t from the key (seed, stream id, j, t) whatever the batch around
it, so the tokens equal those of the static (lockstep) decoder.

On CUDA each batch size bucket (powers of two) is one captured graph; rows are refilled between
replays, every ``REFILL_EVERY_CUDA`` steps, with one host sync."""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import torch

from fastpass.engine import cpu_threads, cuda_graph
from fastpass.engine._ops import sample
from fastpass.engine.decode_loop import REASON_EOS, REASON_LENGTH, REASON_STOP, ChunkItem, DecodeParams
from fastpass.engine.kv_store import SlotKVStore

REFILL_EVERY_CUDA = 8
MIN_BUCKET = 8


@dataclass
class _Slot:
    item: ChunkItem
    next_sample: int = 0  # samples of the item started so far
    running: int = 0      # rows decoding its samples now


@dataclass
class PromptResult:
    """All samples of one prompt: tokens int64 [n, max_new] (pad after each end), lengths, reasons;
    ``finished`` marks the samples drawn so far."""
    index: int
    tokens: torch.Tensor
    lengths: torch.Tensor
    reasons: torch.Tensor
    finished: torch.Tensor

    @classmethod
    def empty(cls, index: int, n: int, max_new: int, pad: int) -> "PromptResult":
        return cls(index, torch.full((n, max_new), pad, dtype=torch.int64), torch.zeros(n, dtype=torch.int64),
                   torch.zeros(n, dtype=torch.int64), torch.zeros(n, dtype=torch.bool))

    def missing(self) -> list[tuple[int, int]]:
        """(first sample, count) of each run of samples not drawn yet."""
        runs, j, n = [], 0, self.finished.numel()
        while j < n:
            if self.finished[j]:
                j += 1
                continue
            k = j
            while k < n and not self.finished[k]:
                k += 1
            runs.append((j, k - j))
            j = k
        return runs


def _bucket(live: int, rows: int) -> int:
    b = MIN_BUCKET
    while b < live:
        b *= 2
    return min(b, rows)


class ContinuousDecoder:
    """Decodes ``items`` on ``rows`` decode rows and ``slots`` resident prompts; :meth:`run` yields
    a :class:`PromptResult` for each prompt index as soon as all its ``n`` samples are done."""

    def __init__(self, adapter, items: list[ChunkItem], n: int, p: DecodeParams, rows: int, slots: int,
                 results: dict | None = None):
        self.adapter, self.p, self.n = adapter, p, n
        self.pending = deque(items)
        dev = self.device = adapter.device
        self.min_batch = adapter.min_batch  # small CPU batches are padded with idle rows
        self.sample_rows = rows  # rows that take samples; any beyond them only pad small CPU batches
        rows = self.rows = max(rows, self.min_batch)
        self.num_slots = slots
        # CUDA: one captured graph per batch bucket; static_batch (tests on CPU) pads to the
        # buckets without graphs, exercising the exact shapes the graphs replay
        self.use_graph = dev.type == "cuda" and p.use_graph is not False
        self.static = self.use_graph or bool(p.static_batch)
        self.graph_pool = None
        self.store = SlotKVStore(slots, max(len(it.prompt) for it in items), rows, p.max_new_tokens, dev,
                                 backend=p.backend)
        i64 = dict(dtype=torch.int64, device=dev)
        self.stream_ids = torch.zeros(rows, **i64)
        self.sample_ids = torch.zeros(rows, **i64)
        self.pos_base = torch.zeros(rows, **i64)
        self.steps = torch.ones(rows, **i64)  # tokens drawn so far; idle rows sit at 1 (valid slot 0)
        self.tokens = torch.full((rows,), p.pad_id, **i64)
        self.out = torch.full((rows, p.max_new_tokens + 1), p.pad_id, **i64)  # last column: idle writes
        self.done = torch.ones(rows, dtype=torch.bool, device=dev)
        self.reasons = torch.zeros(rows, **i64)
        self.eos = torch.tensor(list(p.eos_ids) or [-1], **i64)
        self.pad = torch.tensor(p.pad_id, **i64)
        self.seed_t = torch.tensor(p.seed, **i64)
        self.slot_logits = None
        self.presence = None  # [rows, V] bool: tokens a repetition penalty applies to
        # batch order: storage row of each batch row, grouped by slot (buffers: graph-safe views)
        self.order = torch.arange(rows, **i64)
        self.order32 = self.order.to(torch.int32)
        self.suffix_lens = torch.ones(rows, dtype=torch.int32, device=dev)
        self.write_slots = torch.zeros(rows, **i64)
        self.store.seq_offsets = torch.zeros(slots + 1, dtype=torch.int32, device=dev)
        self.batch = self.live = 0
        self.changed = False
        self.streamer = p.stop.streamer(rows, p.token_bytes, dev) if p.stop is not None else None
        self.row_owner: list[tuple[int, int] | None] = [None] * rows  # (slot, sample) of each row
        self.slot_items: list[_Slot | None] = [None] * slots
        self.results: dict[int, PromptResult] = results if results is not None else {}
        self.outstanding: dict[int, int] = {}
        for it in items:
            self.outstanding[it.index] = self.outstanding.get(it.index, 0) + it.count
        self.graphs: dict[int, object] = {}
        self.on_samples = None  # callback(count, tokens) as samples finish
        self.stats = {"steps": 0, "refills": 0, "prefills": 0, "graph": False, "row_steps": 0,
                      "live_row_steps": 0, "slot_starved": 0}

    # ---- the step (graph-safe: fixed buffers, in-place updates) ---------------------------
    def _sample(self, logits, rows, steps):
        p = self.p
        if self.presence is not None:
            logits = _penalize(logits, self.presence.index_select(0, rows), p.repetition_penalty)
        return sample(logits, temperature=p.temperature, top_k=p.top_k, top_p=p.top_p, min_p=p.min_p,
                      seed=self.seed_t, stream_ids=self.stream_ids.index_select(0, rows),
                      sample_ids=self.sample_ids.index_select(0, rows), step=steps,
                      backend=None if p.backend == "cpu" else p.backend)

    def _record(self, rows, steps, tok):
        """Token ``steps`` of the samples on ``rows``: store it, then mark EOS / stop / length ends."""
        alive = ~self.done.index_select(0, rows)
        tok = torch.where(alive, tok, self.pad)
        self.out.index_put_((rows, torch.where(alive, steps, self.p.max_new_tokens)), tok)
        finished = (tok[:, None] == self.eos[None, :]).any(-1) & alive
        reasons = torch.where(finished, REASON_EOS, self.reasons.index_select(0, rows))
        if self.streamer is not None:
            ids = torch.full((self.rows,), -1, dtype=torch.int64, device=self.device)
            ids.index_copy_(0, rows, torch.where(alive, tok, -1))
            stop = self.streamer.step(ids).index_select(0, rows) & alive & ~finished
            reasons = torch.where(stop, REASON_STOP, reasons)
            finished = finished | stop
        if self.presence is not None:
            self.presence.index_put_((rows, tok), alive | self.presence[rows, tok])
        steps = steps + alive.to(torch.int64)
        finished = finished | (steps >= self.p.max_new_tokens)
        self.reasons.index_copy_(0, rows, reasons)
        self.done.index_copy_(0, rows, self.done.index_select(0, rows) | finished)
        self.steps.index_copy_(0, rows, steps)
        self.tokens.index_copy_(0, rows, tok)

    def _step(self, b: int):
        """Feed every batch row its last token, draw its next one."""
        rows = self.order[:b]
        steps = self.steps.index_select(0, rows)
        st = self.store
        st.suffix_rows = self.order32[:b]
        st.suffix_lens = self.suffix_lens[:b]
        st.suffix_lens.copy_(steps)
        st.write_slots = self.write_slots[:b]
        torch.sub(steps, 1, out=st.write_slots)
        logits = self.adapter.decode(st, self.tokens.index_select(0, rows),
                                     self.pos_base.index_select(0, rows) + steps - 1)
        self._record(rows, steps, self._sample(logits, rows, steps))

    # ---- refills (host side, between steps) ---------------------------------------------
    def _harvest(self):
        """Collect finished samples; yields prompts whose samples are all done."""
        owned = [r for r in range(self.rows) if self.row_owner[r] is not None]
        if not owned:
            return
        owned_t = torch.tensor(owned, device=self.device)
        done = self.done.index_select(0, owned_t).cpu().tolist()
        fin = [r for r, d in zip(owned, done) if d]
        if not fin:
            return
        self.changed = True
        fin_t = torch.tensor(fin, device=self.device)
        out = self.out.index_select(0, fin_t)[:, :self.p.max_new_tokens].cpu()
        lengths = self.steps.index_select(0, fin_t).cpu()
        reasons = self.reasons.index_select(0, fin_t).cpu()
        if self.on_samples is not None:
            self.on_samples(len(fin), int(lengths.sum()))
        for i, r in enumerate(fin):
            slot_id, j = self.row_owner[r]
            self.row_owner[r] = None
            slot = self.slot_items[slot_id]
            slot.running -= 1
            item = slot.item
            if slot.running == 0 and slot.next_sample == item.count:
                self.slot_items[slot_id] = None
            res = self.results.get(item.index)
            if res is None:
                res = self.results[item.index] = PromptResult.empty(item.index, self.n, self.p.max_new_tokens,
                                                                    self.p.pad_id)
            sample_j = item.first_sample + j
            res.tokens[sample_j] = out[i]
            res.lengths[sample_j] = lengths[i]
            res.reasons[sample_j] = reasons[i]
            res.finished[sample_j] = True
            self.outstanding[item.index] -= 1
            if self.outstanding[item.index] == 0:
                yield self.results.pop(item.index)

    def _admit(self) -> bool:
        """Give free rows to pending samples (resident prompts first, then new prompts prefilled
        into free slots, at most one prefill token budget per refill). Returns whether any row started."""
        free = [r for r in reversed(range(self.sample_rows)) if self.row_owner[r] is None]  # pop() = lowest
        starts = []  # (row, slot, sample)
        for s, slot in enumerate(self.slot_items):
            while free and slot is not None and slot.next_sample < slot.item.count:
                starts.append((free.pop(), s, slot.next_sample))
                slot.next_sample += 1
                slot.running += 1
        new_slots, budget = [], self.adapter.prefill_token_budget
        while free and self.pending and None in self.slot_items:
            item = self.pending[0]
            if new_slots and len(item.prompt) > budget:
                break
            self.pending.popleft()
            budget -= len(item.prompt)
            s = self.slot_items.index(None)
            slot = self.slot_items[s] = _Slot(item)
            new_slots.append(s)
            while free and slot.next_sample < item.count:
                starts.append((free.pop(), s, slot.next_sample))
                slot.next_sample += 1
                slot.running += 1
        if free and self.pending:  # rows idle until a resident prompt ends: more slots would use them
            self.stats["slot_starved"] += len(free)
        if new_slots:
            self._prefill(new_slots)
        if starts:
            self._start(starts)
        return bool(starts)

    def _prefill(self, slots):
        prompts = [self.slot_items[s].item.prompt for s in slots]
        st = self.store
        logits = self.adapter.prefill(st, prompts, slots)
        st.begin_decode()
        if self.slot_logits is None:
            self.slot_logits = torch.empty(self.num_slots, logits.shape[1], dtype=logits.dtype, device=self.device)
            if self.p.repetition_penalty != 1.0:
                self.presence = torch.zeros(self.rows, logits.shape[1], dtype=torch.bool, device=self.device)
        idx = torch.tensor(slots, device=self.device)
        self.slot_logits.index_copy_(0, idx, logits)
        st.prefix_lens.index_copy_(0, idx, torch.tensor([len(p) for p in prompts], dtype=torch.int32,
                                                        device=self.device))
        self.stats["prefills"] += 1

    def _start(self, starts):
        """Rows begin samples: reset their state, draw token 0 from their prompt's last logits."""
        dev = self.device
        rows = torch.tensor([r for r, _, _ in starts], device=dev)
        items = [self.slot_items[s].item for _, s, _ in starts]
        self.stream_ids.index_copy_(0, rows, torch.tensor([it.stream_id for it in items], device=dev))
        self.sample_ids.index_copy_(0, rows, torch.tensor([it.first_sample + j for (_, _, j), it in
                                                           zip(starts, items)], device=dev))
        self.pos_base.index_copy_(0, rows, torch.tensor([len(it.prompt) for it in items], device=dev))
        self.out.index_fill_(0, rows, self.p.pad_id)
        self.done.index_fill_(0, rows, False)
        self.reasons.index_fill_(0, rows, REASON_LENGTH)
        if self.streamer is not None:
            self.streamer.reset(rows)
        if self.presence is not None:
            self.presence.index_fill_(0, rows, False)
            for r, it in zip(rows.tolist(), items):
                self.presence[r, torch.tensor(it.prompt, device=dev)] = True
        for r, s, j in starts:
            self.row_owner[r] = (s, j)
        logits = self.slot_logits.index_select(0, torch.tensor([s for _, s, _ in starts], device=dev))
        steps = torch.zeros(len(starts), dtype=torch.int64, device=dev)
        self._record(rows, steps, self._sample(logits, rows, steps))

    def _reorder(self) -> int:
        """Batch = live rows grouped by slot (padded to a graph bucket on CUDA, to CPU_MIN_BATCH rows on
        CPU); returns its size."""
        live = sorted((s, r) for r, own in enumerate(self.row_owner) if own is not None for s in [own[0]])
        counts = [0] * self.num_slots
        for s, _ in live:
            counts[s] += 1
        order = [r for _, r in live]
        b = len(order)
        if b and (self.static or b < self.min_batch):
            b = _bucket(b, self.rows) if self.static else self.min_batch
            idle = [r for r in range(self.rows) if self.row_owner[r] is None]
            order += idle[:b - len(order)]
            counts[-1] += b - len(live)  # idle rows ride along with the last slot (done: never recorded)
        offsets = [0]
        for c in counts:
            offsets.append(offsets[-1] + c)
        if b:
            self.order[:b].copy_(torch.tensor(order, dtype=torch.int64))
            self.order32[:b].copy_(self.order[:b])
        self.store.seq_offsets.copy_(torch.tensor(offsets, dtype=torch.int32))
        self.store.max_seqs_per_prompt = b if self.static else max(counts)
        self.stats["refills"] += 1
        self.live = len(live)
        return b

    def _refill(self):
        """Harvest and admit until every free row has work or none is left; yields finished prompts."""
        self.changed = False
        while True:
            yield from self._harvest()
            if not self._admit():
                break
            self.changed = True
        if self.changed:
            self.batch = self._reorder()

    # ---- driving --------------------------------------------------------------------------
    def run(self):
        dev = self.device
        threads = None
        if dev.type == "cpu":
            options = cpu_threads.candidates()
            torch.set_num_threads(cpu_threads.pick(self.adapter.model, min(self.rows, 512), options))
            threads = cpu_threads.StepThreads(self.adapter.model, self.rows, options)
        yield from self._refill()
        every = REFILL_EVERY_CUDA if dev.type == "cuda" else 1
        while self.batch:
            for _ in range(every):
                self._run_step(self.batch, threads)
                self.stats["live_row_steps"] += self.live
            yield from self._refill()
        self.stats["threads"] = threads.best if threads is not None else None

    def _run_step(self, b, threads):
        self.stats["steps"] += 1
        self.stats["row_steps"] += b
        if self.use_graph:
            if b not in self.graphs:  # warm-up steps run for real, then one step is captured
                if self.graph_pool is None:
                    self.graph_pool = torch.cuda.graph_pool_handle()
                graph, warm = cuda_graph.capture(lambda: self._step(b), 1 + cuda_graph.WARMUP_STEPS,
                                                 pool=self.graph_pool)
                self.graphs[b] = graph  # None: capture failed, this bucket decodes eagerly
                self.stats["graph"] = self.stats["graph"] or graph is not None
                self.stats["steps"] += warm - 1
                return
            graph = self.graphs[b]
            if graph is not None:
                graph.replay()
                return
        if threads is not None:
            threads.run(lambda: self._step(b))
        else:
            self._step(b)


def _penalize(logits, present, penalty: float):
    """HF's repetition penalty: logits of tokens already present are divided by ``penalty`` when
    positive and multiplied when negative."""
    scaled = torch.where(logits < 0, logits * penalty, logits / penalty)
    return torch.where(present, scaled, logits)
