"""Decode one chunk: prefill its prompts once, then step all samples with static shapes until every
sequence has finished (EOS, stop regex, or length). On CUDA the step is one captured graph."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from fastpass.engine import cpu_threads, cuda_graph
from fastpass.engine._ops import sample
from fastpass.engine.kv_store import KVStore

REASON_LENGTH, REASON_EOS, REASON_STOP = 0, 1, 2
REASON_NAMES = ("length", "eos", "stop")


@dataclass
class DecodeParams:
    max_new_tokens: int
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    seed: int = 0
    eos_ids: tuple[int, ...] = ()
    pad_id: int = 0
    stop: object = None            # fastpass.regex.Regex or None
    token_bytes: object = None     # fastpass.regex TokenBytes, needed with stop
    use_graph: bool | None = None  # None: on CUDA
    compact: bool | None = None    # gather live rows once half have finished (eager path; None: on)
    backend: str | None = None
    repetition_penalty: float = 1.0  # HF's: present tokens' logits / penalty (x penalty if negative)
    static_batch: bool | None = None  # continuous batching: pad to graph buckets without graphs (tests)


@dataclass
class ChunkItem:
    """Samples ``first_sample .. first_sample + count - 1`` of one prompt."""
    prompt: list[int]
    stream_id: int
    first_sample: int
    count: int
    index: int = 0  # the prompt's index in the caller's list


@dataclass
class ChunkResult:
    tokens: torch.Tensor   # int64 [N, max_new_tokens] (cpu), pad after the end
    lengths: torch.Tensor  # int64 [N]
    reasons: torch.Tensor  # int64 [N], REASON_*
    stats: dict = field(default_factory=dict)


class _Rows:
    """Per-sequence device state; every update is in place (graph-safe)."""

    def __init__(self, items: list[ChunkItem], store: KVStore, p: DecodeParams, device):
        n = store.num_seqs
        i64 = dict(dtype=torch.int64, device=device)
        self.stream_ids = torch.tensor([it.stream_id for it in items for _ in range(it.count)], **i64)
        self.sample_ids = torch.tensor([it.first_sample + j for it in items for j in range(it.count)], **i64)
        self.pos_base = store.prefix_lens.to(torch.int64)[store.prompt_of_seq]
        self.tokens = torch.zeros(n, **i64)
        self.out = torch.full((n, p.max_new_tokens), p.pad_id, **i64)
        self.done = torch.zeros(n, dtype=torch.bool, device=device)
        self.lengths = torch.zeros(n, **i64)
        self.reasons = torch.zeros(n, **i64)
        self.row_ids = torch.arange(n, **i64)  # original row of each live row (compaction)
        self.eos = torch.tensor(list(p.eos_ids) or [-1], **i64)
        self.pad = torch.tensor(p.pad_id, **i64)

    def select(self, keep):
        for name in ("stream_ids", "sample_ids", "pos_base", "tokens", "out", "done", "lengths", "reasons",
                     "row_ids"):
            setattr(self, name, getattr(self, name).index_select(0, keep))


class ChunkDecoder:
    def __init__(self, adapter, items: list[ChunkItem], p: DecodeParams):
        self.adapter, self.items, self.p = adapter, items, p
        dev = adapter.device
        self.store = KVStore([len(it.prompt) for it in items], [it.count for it in items],
                             p.max_new_tokens - 1, dev, backend=p.backend)
        self.rows = _Rows(items, self.store, p, dev)
        self.n0 = self.store.num_seqs
        self.step_t = torch.zeros((), dtype=torch.int64, device=dev)
        self.seed_t = torch.tensor(p.seed & (2**63 - 1), dtype=torch.int64, device=dev)
        self.streamer = None
        if p.stop is not None:
            self.streamer = p.stop.streamer(self.n0, p.token_bytes, dev)

    # ---- the step -----------------------------------------------------------------------
    def _sample(self, logits):
        p, r = self.p, self.rows
        return sample(logits, temperature=p.temperature, top_k=p.top_k, top_p=p.top_p, min_p=p.min_p,
                      seed=self.seed_t, stream_ids=r.stream_ids, step=self.step_t, sample_ids=r.sample_ids,
                      backend=None if p.backend == "cpu" else p.backend)  # no C++ sampler: its CPU default

    def _record(self, tok):
        r = self.rows
        alive = ~r.done
        tok = torch.where(alive, tok, r.pad)
        r.out.index_copy_(1, self.step_t.view(1), tok[:, None])
        r.lengths.add_(alive.to(torch.int64))
        finished = (tok[:, None] == r.eos[None, :]).any(-1) & alive
        r.reasons.masked_fill_(finished, REASON_EOS)
        if self.streamer is not None:
            if r.done.numel() == self.n0:
                hit = self.streamer.step(tok)
            else:  # compacted: the streamer still holds all original rows
                full = r.pad.expand(self.n0).clone().index_copy_(0, r.row_ids, tok)
                hit = self.streamer.step(full).index_select(0, r.row_ids)
            stop = hit & alive & ~finished
            r.reasons.masked_fill_(stop, REASON_STOP)
            finished = finished | stop
        r.done.logical_or_(finished)
        r.tokens.copy_(tok)

    def _step(self):
        """Feed token step_t - 1 of every sequence, sample token step_t."""
        prev = self.step_t - 1
        self.store.set_step(prev)
        logits = self.adapter.decode(self.store, self.rows.tokens, self.rows.pos_base + prev)
        self._record(self._sample(logits))
        self.step_t.add_(1)

    # ---- driving ------------------------------------------------------------------------
    def run(self) -> ChunkResult:
        p, dev = self.p, self.adapter.device
        use_graph = (dev.type == "cuda") if p.use_graph is None else p.use_graph
        prompts = [it.prompt for it in self.items]
        threads = None
        if dev.type == "cpu":
            options = cpu_threads.candidates()
            torch.set_num_threads(cpu_threads.pick(self.adapter.model, sum(map(len, prompts)), options))
            threads = cpu_threads.StepThreads(self.adapter.model, self.store.num_seqs, options)
        first = self.adapter.prefill(self.store, prompts)
        self._record(self._sample(first.index_select(0, self.store.prompt_of_seq)))
        self.step_t.add_(1)
        self.store.begin_decode()
        stats = {"graph": False, "compactions": 0, "steps": 1, "threads": torch.get_num_threads()}
        check_every = 8 if dev.type == "cuda" else 1
        graph = None
        steps_left = p.max_new_tokens - 1
        if steps_left > 0 and bool(self.rows.done.all()):  # every sample ended on its first token
            steps_left = 0
        if use_graph and steps_left > 3:
            graph, warm_steps = cuda_graph.capture(self._step, steps_left)
            stats["graph"] = graph is not None
            steps_left -= warm_steps
            stats["steps"] += warm_steps
        done_rows = []
        since_check = 0
        while steps_left > 0:
            if graph is not None:
                graph.replay()
            elif threads is not None:
                threads.run(self._step)
            else:
                self._step()
            steps_left -= 1
            stats["steps"] += 1
            since_check += 1
            if since_check >= check_every or steps_left == 0:
                since_check = 0
                live = int((~self.rows.done).sum())
                if live == 0:
                    break
                if p.compact is not False and graph is None and live <= self.rows.done.numel() // 2 \
                        and steps_left > 4:
                    done_rows.append(self._compact())
                    stats["compactions"] += 1
        if threads is not None:
            stats["threads"] = threads.best
        return self._result(done_rows, stats)

    def _compact(self):
        """Drop finished rows from the batch; returns their final (row_ids, out, lengths, reasons)."""
        r = self.rows
        finished = r.done.nonzero().view(-1)
        kept = (~r.done).nonzero().view(-1)
        gone = tuple(t.index_select(0, finished) for t in (r.row_ids, r.out, r.lengths, r.reasons))
        r.select(kept)
        self.store.keep_rows(kept)
        return gone

    def _result(self, done_rows, stats) -> ChunkResult:
        r = self.rows
        parts = done_rows + [(r.row_ids, r.out, r.lengths, r.reasons)]
        ids = torch.cat([x[0] for x in parts]).cpu()
        order = torch.argsort(ids)
        pick = lambda k: torch.cat([x[k].cpu() for x in parts])[order]
        return ChunkResult(tokens=pick(1), lengths=pick(2), reasons=pick(3), stats=stats)
