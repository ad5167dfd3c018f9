"""``fp.Sampler``: n samples per prompt with each prompt's KV stored once; ``SampleBatch`` results."""
from __future__ import annotations

import contextlib
import numbers

import numpy as np
import torch

from fastpass.engine import cpu_memory, packed_linear
from fastpass.engine.cpu_threads import restored_threads
from fastpass.engine.decode_loop import REASON_NAMES, ChunkItem, DecodeParams
from fastpass.engine.model_adapter import ModelAdapter
from fastpass.engine.planning import memory_budget, plan_chunks, plan_continuous, run_chunks, run_continuous
from fastpass.sampling import check_sampling_args, key64


class SampleBatch:
    """Results of :meth:`Sampler.sample` for P prompts x n samples.

    ``tokens[i][j]``: generated ids of sample j of prompt i (no prompt, no padding; a final EOS
    is included); ``lengths``: int64 array [P, n]; ``finish_reasons[i][j]`` in {"eos", "length",
    "stop"}; ``texts[i][j]``: decoded on first access (needs the tokenizer); ``num_tokens``."""

    def __init__(self, tokens, lengths, finish_reasons, tokenizer=None, stats=None):
        self.tokens = tokens
        self.lengths = lengths
        self.finish_reasons = finish_reasons
        self.stats = stats or {}
        self._tokenizer = tokenizer
        self._texts = None

    @property
    def num_tokens(self) -> int:
        return int(self.lengths.sum())

    @property
    def texts(self) -> list[list[str]]:
        if self._texts is None:
            if self._tokenizer is None:
                raise ValueError("SampleBatch.texts needs a tokenizer: create fp.Sampler(model, tokenizer)")
            flat = [seq for row in self.tokens for seq in row]
            decoded = self._tokenizer.batch_decode(flat, skip_special_tokens=True) if flat else []
            n = len(self.tokens[0]) if self.tokens else 0
            self._texts = [decoded[i * n:(i + 1) * n] for i in range(len(self.tokens))]
        return self._texts

    def __len__(self) -> int:
        return len(self.tokens)

    def __repr__(self) -> str:
        p, n = self.lengths.shape
        return f"SampleBatch(prompts={p}, n={n}, num_tokens={self.num_tokens})"


def _check_count(name, value, lo, hi=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < lo or (hi is not None and value > hi):
        raise ValueError(f"{name} must lie in [{lo}, {'inf)' if hi is None else f'{hi}]'}, got {value}")


def _eos_ids(model, tokenizer) -> tuple[int, ...]:
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None and tokenizer is not None:
        eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        return ()
    return tuple(int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos]))


def _token_ids(p, i: int) -> list[int]:
    if isinstance(p, torch.Tensor):
        if p.is_floating_point() or p.is_complex() or p.dtype == torch.bool:
            raise TypeError(f"prompt {i} is a {p.dtype} tensor: token ids must be integers (torch.long)")
        return p.reshape(-1).tolist()
    ids = []
    for t in p:
        if isinstance(t, bool) or not isinstance(t, (numbers.Integral, np.integer)):
            raise TypeError(f"prompt {i} holds {t!r} ({type(t).__name__}): token ids must be ints")
        ids.append(int(t))
    return ids


class Sampler:
    """Reusable sampler for one model: ``Sampler(model, tokenizer).sample(prompts, n, ...)``.

    Each prompt is prefilled once and its KV stored once; all n samples attend to it with split
    attention. Sample j of prompt i draws from the key (seed, stream_ids[i], j, step), so results do
    not depend on what else is in the batch.

    Decoding is continuous: a fixed set of rows stays busy, each finished sample's row taking the
    next pending sample (of a resident prompt, or of a new prompt prefilled in between steps), so a
    long-tailed job never waits for its slowest sample per group. ``continuous=False`` decodes
    chunks in lockstep instead (every row steps until the chunk's longest sample ends); both give
    the same samples. :meth:`stream` yields each prompt's samples as soon as they are all drawn.

    Options: ``backend`` forces a kernel tier (``"cpu"``: the C++ tier where an op has one, its
    default elsewhere); ``use_graph`` (default: on CUDA) captures the decode step in CUDA graphs
    (continuous: one per batch-size bucket); ``max_rows`` caps the samples decoded together;
    ``compact`` (lockstep decoding only, default on) drops finished rows once half of a chunk has
    finished; ``pack_weights`` (default: on CPU, memory permitting) runs the linear layers on a
    oneDNN-packed copy of their weights, kept per model and repacked when they change: faster, and
    batch-invariant, so a sample's tokens do not depend on which samples share its steps (logits
    match the model's own forward to float rounding, not bit for bit; pass False for torch's
    kernels, which are not batch-invariant). On CPU with glibc the first call fixes malloc's mmap and
    trim thresholds so each step's large blocks are reused, not faulted in anew
    (:mod:`fastpass.engine.cpu_memory`; ``FASTPASS_MALLOC_TUNING=0`` leaves malloc alone)."""

    def __init__(self, model, tokenizer=None, backend: str | None = None, use_graph: bool | None = None,
                 compact: bool | None = None, max_rows: int | None = None, pack_weights: bool | None = None,
                 continuous: bool = True):
        self.adapter = ModelAdapter(model)
        self._packed = None
        if self.adapter.device.type == "cpu" and packed_linear.enabled(model, pack_weights):
            self._packed = packed_linear.for_model(model)
        self.model, self.tokenizer = model, tokenizer
        self.backend, self.use_graph, self.compact, self.max_rows = backend, use_graph, compact, max_rows
        self.continuous = continuous
        self.last_stats: dict = {}
        if tokenizer is not None and len(tokenizer) > self.adapter.vocab_size:
            raise ValueError(f"tokenizer has {len(tokenizer)} tokens but the model's vocabulary has "
                             f"{self.adapter.vocab_size}: pass the tokenizer that belongs to this model")
        self._token_bytes = None

    def _encode(self, prompts, chat: bool) -> list[list[int]]:
        if isinstance(prompts, (str, bytes)) or not isinstance(prompts, (list, tuple)):
            raise TypeError("prompts must be a list of str, of chat message lists, or of token-id lists")
        if not prompts:
            raise ValueError("prompts is empty: pass at least one prompt")
        out = []
        for i, p in enumerate(prompts):
            is_chat = isinstance(p, (list, tuple)) and bool(p) and isinstance(p[0], dict)
            if isinstance(p, str) or is_chat:
                if self.tokenizer is None:
                    raise ValueError("text prompts need a tokenizer: fp.Sampler(model, tokenizer)")
                ids = self._chat_ids(p if is_chat else [{"role": "user", "content": p}]) \
                    if chat or is_chat else list(self.tokenizer(p)["input_ids"])
            else:
                ids = _token_ids(p, i)
            if not ids:
                raise ValueError(f"prompt {i} is empty: every prompt needs at least one token")
            bad = [t for t in ids if not 0 <= t < self.adapter.vocab_size]
            if bad:
                raise ValueError(f"prompt {i} holds token id {bad[0]} outside the model's vocabulary "
                                 f"[0, {self.adapter.vocab_size}): check the tokenizer")
            out.append(ids)
        return out

    def _chat_ids(self, messages) -> list[int]:
        if not getattr(self.tokenizer, "chat_template", None):
            raise ValueError("chat=True, but the tokenizer has no chat template: pass chat=False (base models "
                             "take plain text) or set tokenizer.chat_template")
        text = self.tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _stop_state(self, stop):
        if stop is None:
            return None, None
        if not hasattr(stop, "streamer"):
            raise TypeError(f"stop must be a fastpass.regex.Regex (fp.regex.compile(...)), got "
                            f"{type(stop).__name__}")
        if self.tokenizer is None:
            raise ValueError("a stop regex needs the tokenizer (token bytes): fp.Sampler(model, tokenizer)")
        if self._token_bytes is None:
            from fastpass.regex import token_byte_table

            self._token_bytes = token_byte_table(self.tokenizer).to(self.adapter.device)
        return stop, self._token_bytes

    def _prepare(self, prompts, n, max_new_tokens, temperature, top_k, top_p, min_p, seed, stream_ids, stop,
                 eos_token_id, pad_token_id, repetition_penalty, chat):
        _check_count("n", n, 1)
        _check_count("max_new_tokens", max_new_tokens, 1)
        check_sampling_args(temperature, top_k, top_p, min_p, repetition_penalty)
        _check_count("seed", seed, 0, 2**64 - 1)
        ids = self._encode(prompts, chat)
        if stream_ids is None:
            stream_ids = list(range(len(ids)))
        stream_ids = [int(s) for s in (stream_ids.tolist() if hasattr(stream_ids, "tolist") else stream_ids)]
        if len(stream_ids) != len(ids):
            raise ValueError(f"stream_ids has {len(stream_ids)} entries for {len(ids)} prompts: "
                             "give one per prompt")
        for s in stream_ids:
            key64(s, "stream id")
        limit = self.adapter.max_positions
        longest = max(len(p) for p in ids)
        if limit is not None and longest + max_new_tokens > limit:
            raise ValueError(f"prompt of {longest} tokens + max_new_tokens={max_new_tokens} exceeds the model's "
                             f"context ({limit}): shorten the prompt or lower max_new_tokens")
        if eos_token_id is None:
            eos = _eos_ids(self.model, self.tokenizer)
        elif isinstance(eos_token_id, (list, tuple)):
            eos = tuple(int(e) for e in eos_token_id)
        else:
            eos = (int(eos_token_id),)
        if pad_token_id is None:
            pad_token_id = getattr(getattr(self.model, "generation_config", None), "pad_token_id", None)
            if pad_token_id is None:
                pad_token_id = eos[0] if eos else 0
        if repetition_penalty != 1.0 and not self.continuous:
            raise ValueError("repetition_penalty needs continuous decoding: use fp.Sampler(model) (the default, "
                             "continuous=True)")
        stop, token_bytes = self._stop_state(stop)
        params = DecodeParams(max_new_tokens=int(max_new_tokens), temperature=float(temperature),
                              top_k=int(top_k), top_p=float(top_p), min_p=float(min_p), seed=key64(int(seed)),
                              eos_ids=eos, pad_id=int(pad_token_id), stop=stop, token_bytes=token_bytes,
                              use_graph=self.use_graph, compact=self.compact, backend=self.backend,
                              repetition_penalty=float(repetition_penalty))
        return ids, stream_ids, params

    @contextlib.contextmanager
    def _engaged(self):
        packed = self._packed.installed() if self._packed is not None else contextlib.nullcontext()
        if self.adapter.device.type == "cpu":
            cpu_memory.keep_freed_blocks()
        with self.adapter.attached(), restored_threads(), packed:
            yield

    def stream(self, prompts, n: int, max_new_tokens: int = 256, temperature: float = 1.0, top_k: int = 0,
               top_p: float = 1.0, min_p: float = 0.0, seed: int = 0, stream_ids=None, stop=None,
               eos_token_id=None, pad_token_id=None, repetition_penalty: float = 1.0, chat: bool = False,
               on_progress=None):
        """Like :meth:`sample`, but yields ``(i, SampleBatch of prompt i alone)`` as soon as all n
        samples of prompt i are drawn (continuous decoding finishes prompts out of order).
        ``on_progress(samples_done, tokens_done)`` is called whenever samples finish."""
        ids, stream_ids, params = self._prepare(prompts, n, max_new_tokens, temperature, top_k, top_p, min_p, seed,
                                                stream_ids, stop, eos_token_id, pad_token_id, repetition_penalty,
                                                chat)
        for index, tokens, lengths, reasons in self._decode(ids, stream_ids, n, params, on_progress):
            yield index, self._batch([tokens], lengths[None], reasons[None])

    def sample(self, prompts, n: int, max_new_tokens: int = 256, temperature: float = 1.0, top_k: int = 0,
               top_p: float = 1.0, min_p: float = 0.0, seed: int = 0, stream_ids=None, stop=None,
               eos_token_id=None, pad_token_id=None, repetition_penalty: float = 1.0,
               chat: bool = False) -> SampleBatch:
        """n samples of each prompt (str, chat message list, or token ids); see the class doc.

        ``chat=True`` applies the tokenizer's chat template to string prompts (as the user turn,
        with the generation prompt): what instruct models are trained on. A list of message dicts
        always goes through the template. ``eos_token_id`` / ``pad_token_id`` override the model's
        generation config; ``repetition_penalty`` is HF's (prompt and generated tokens)."""
        batch, _padded = self.sample_padded(prompts, n, max_new_tokens, temperature, top_k, top_p, min_p, seed,
                                            stream_ids, stop, eos_token_id, pad_token_id, repetition_penalty, chat)
        return batch

    def sample_padded(self, prompts, n, max_new_tokens=256, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0,
                      seed=0, stream_ids=None, stop=None, eos_token_id=None, pad_token_id=None,
                      repetition_penalty=1.0, chat=False):
        """Like :meth:`sample`, also returning the tokens as int64 [P, n, max_new_tokens], pad after each end."""
        ids, stream_ids, params = self._prepare(prompts, n, max_new_tokens, temperature, top_k, top_p, min_p, seed,
                                                stream_ids, stop, eos_token_id, pad_token_id, repetition_penalty,
                                                chat)
        tokens = torch.full((len(ids), n, params.max_new_tokens), params.pad_id, dtype=torch.int64)
        lengths = torch.zeros(len(ids), n, dtype=torch.int64)
        reasons = torch.zeros(len(ids), n, dtype=torch.int64)
        for index, t, l, r in self._decode(ids, stream_ids, n, params):
            tokens[index], lengths[index], reasons[index] = t, l, r
        return self._batch(tokens, lengths, reasons), tokens

    def _decode(self, ids, stream_ids, n, params, on_progress=None):
        """Yields (prompt index, tokens [n, max_new], lengths [n], reasons [n]) per finished prompt."""
        items = [ChunkItem(p, stream_ids[i], 0, n, index=i) for i, p in enumerate(ids)]
        stats: dict = {"packed_weights": self._packed is not None, "continuous": self.continuous}
        self.last_stats = stats
        done = [0, 0]  # samples, tokens

        def progress(samples, tokens):
            done[0], done[1] = done[0] + samples, done[1] + tokens
            if on_progress is not None:
                on_progress(done[0], done[1])

        with self._engaged():
            if self.continuous:
                rows, slots = plan_continuous(self.adapter, ids, n, params.max_new_tokens, self.max_rows,
                                              penalty=params.repetition_penalty != 1.0)
                for res in run_continuous(self.adapter, items, n, params, rows, slots, stats, progress):
                    yield res.index, res.tokens, res.lengths, res.reasons
                return
            chunks = plan_chunks(self.adapter, ids, n, stream_ids, params.max_new_tokens,
                                 budget=memory_budget(self.adapter), max_rows=self.max_rows)
            tokens_all, lengths, reasons, chunk_stats = run_chunks(self.adapter, chunks, len(ids), n, params)
            stats.update(chunk_stats)
        for i in range(len(ids)):  # lockstep: a prompt's samples may span chunks, so all come at the end
            progress(n, int(lengths[i].sum()))
            yield i, tokens_all[i], lengths[i], reasons[i]

    def _batch(self, tokens, lengths, reasons) -> SampleBatch:
        lengths_np = np.asarray(lengths, dtype=np.int64)
        toks = [t.tolist() for t in tokens]
        out = [[toks[i][j][:lengths_np[i, j]] for j in range(lengths_np.shape[1])] for i in range(len(toks))]
        names = [[REASON_NAMES[r] for r in row] for row in np.asarray(reasons).tolist()]
        return SampleBatch(out, lengths_np, names, self.tokenizer, self.last_stats)
