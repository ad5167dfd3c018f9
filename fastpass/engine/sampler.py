"""``fp.Sampler``: n samples per prompt with each prompt's KV stored once; ``SampleBatch`` results."""
from __future__ import annotations

import contextlib
import numbers

import numpy as np
import torch

from fastpass.engine import packed_linear
from fastpass.engine.cpu_threads import restored_threads
from fastpass.engine.decode_loop import REASON_NAMES, DecodeParams
from fastpass.engine.model_adapter import ModelAdapter
from fastpass.engine.planning import memory_budget, plan_chunks, run_chunks


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


def _check_number(name, value, lo, hi, lo_open=False, integer=False):
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TypeError(f"{name} must be {'an int' if integer else 'a number'}, got {type(value).__name__}")
    if value < lo or (lo_open and value == lo) or (hi is not None and value > hi):
        span = f"{'(' if lo_open else '['}{lo}, {'inf)' if hi is None else f'{hi}]'}"
        raise ValueError(f"{name} must lie in {span}, got {value}")


def check_sampling_args(n, max_new_tokens, temperature, top_k, top_p, min_p) -> None:
    _check_number("n", n, 1, None, integer=True)
    _check_number("max_new_tokens", max_new_tokens, 1, None, integer=True)
    _check_number("temperature", temperature, 0.0, None)
    _check_number("top_k", top_k, 0, None, integer=True)
    _check_number("top_p", top_p, 0.0, 1.0, lo_open=True)
    _check_number("min_p", min_p, 0.0, 1.0)


def _eos_ids(model, tokenizer) -> tuple[int, ...]:
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None and tokenizer is not None:
        eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        return ()
    return tuple(int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos]))


class Sampler:
    """Reusable sampler for one model: ``Sampler(model, tokenizer).sample(prompts, n, ...)``.

    Each prompt is prefilled once and its KV stored once; all n samples attend to it with split
    attention. Sample j of prompt i draws from the key (seed, stream_ids[i], j, step), so results do
    not depend on what else is in the batch.

    Options: ``backend`` forces a kernel tier (``"cpu"``: the C++ tier where an op has one, its
    default elsewhere); ``use_graph`` (default: on CUDA) captures the decode
    step in a CUDA graph; ``compact`` (default on; eager decoding only) drops finished rows once half
    of a chunk has finished; ``max_rows`` caps the samples decoded together; ``pack_weights``
    (default: on CPU for models with >= 32 MiB of linear weights, memory permitting) runs the linear
    layers on a oneDNN-packed copy of their weights, kept per model and repacked when they change
    (logits then match the model's own forward to float rounding, not bit for bit; pass False for
    torch's kernels)."""

    def __init__(self, model, tokenizer=None, backend: str | None = None, use_graph: bool | None = None,
                 compact: bool | None = None, max_rows: int | None = None, pack_weights: bool | None = None):
        self.adapter = ModelAdapter(model)
        self._packed = None
        if self.adapter.device.type == "cpu" and packed_linear.enabled(model, pack_weights):
            self._packed = packed_linear.for_model(model)
        self.model, self.tokenizer = model, tokenizer
        self.backend, self.use_graph, self.compact, self.max_rows = backend, use_graph, compact, max_rows
        self.last_stats: dict = {}
        if tokenizer is not None and len(tokenizer) > self.adapter.vocab_size:
            raise ValueError(f"tokenizer has {len(tokenizer)} tokens but the model's vocabulary has "
                             f"{self.adapter.vocab_size}: pass the tokenizer that belongs to this model")
        self._token_bytes = None

    def _encode(self, prompts) -> list[list[int]]:
        if isinstance(prompts, (str, bytes)) or not isinstance(prompts, (list, tuple)):
            raise TypeError("prompts must be a list of str or a list of token-id lists")
        if not prompts:
            raise ValueError("prompts is empty: pass at least one prompt")
        out = []
        for i, p in enumerate(prompts):
            if isinstance(p, str):
                if self.tokenizer is None:
                    raise ValueError("string prompts need a tokenizer: fp.Sampler(model, tokenizer)")
                ids = list(self.tokenizer(p)["input_ids"])
            elif isinstance(p, torch.Tensor):
                ids = p.reshape(-1).tolist()
            else:
                ids = [int(t) for t in p]
            if not ids:
                raise ValueError(f"prompt {i} is empty: every prompt needs at least one token")
            bad = [t for t in ids if not 0 <= t < self.adapter.vocab_size]
            if bad:
                raise ValueError(f"prompt {i} holds token id {bad[0]} outside the model's vocabulary "
                                 f"[0, {self.adapter.vocab_size}): check the tokenizer")
            out.append(ids)
        return out

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

    def sample(self, prompts, n: int, max_new_tokens: int = 256, temperature: float = 1.0, top_k: int = 0,
               top_p: float = 1.0, min_p: float = 0.0, seed: int = 0, stream_ids=None, stop=None,
               eos_token_id=None, pad_token_id=None, on_chunk=None) -> SampleBatch:
        """n samples of each prompt; see the class doc. ``eos_token_id`` / ``pad_token_id`` override
        the model's generation config; ``on_chunk(items)`` is called after each finished chunk."""
        batch, _padded = self.sample_padded(prompts, n, max_new_tokens, temperature, top_k, top_p, min_p, seed,
                                            stream_ids, stop, eos_token_id, pad_token_id, on_chunk)
        return batch

    def sample_padded(self, prompts, n, max_new_tokens=256, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0,
                      seed=0, stream_ids=None, stop=None, eos_token_id=None, pad_token_id=None, on_chunk=None):
        """Like :meth:`sample`, also returning the tokens as int64 [P, n, max_new_tokens], pad after each end."""
        check_sampling_args(n, max_new_tokens, temperature, top_k, top_p, min_p)
        _check_number("seed", seed, 0, None, integer=True)
        ids = self._encode(prompts)
        if stream_ids is None:
            stream_ids = list(range(len(ids)))
        stream_ids = [int(s) for s in (stream_ids.tolist() if hasattr(stream_ids, "tolist") else stream_ids)]
        if len(stream_ids) != len(ids):
            raise ValueError(f"stream_ids has {len(stream_ids)} entries for {len(ids)} prompts: "
                             "give one per prompt")
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
        stop, token_bytes = self._stop_state(stop)
        params = DecodeParams(max_new_tokens=int(max_new_tokens), temperature=float(temperature),
                              top_k=int(top_k), top_p=float(top_p), min_p=float(min_p), seed=int(seed),
                              eos_ids=eos, pad_id=int(pad_token_id), stop=stop, token_bytes=token_bytes,
                              use_graph=self.use_graph, compact=self.compact, backend=self.backend)
        packed = self._packed.installed() if self._packed is not None else contextlib.nullcontext()
        with self.adapter.attached(), restored_threads(), packed:
            chunks = plan_chunks(self.adapter, ids, n, stream_ids, max_new_tokens,
                                 budget=memory_budget(self.adapter), max_rows=self.max_rows)
            tokens, lengths, reasons, stats = run_chunks(self.adapter, chunks, len(ids), n, params, on_chunk)
        self.last_stats = {**stats, "packed_weights": self._packed is not None}
        lengths_np = lengths.numpy()
        toks = tokens.tolist()
        out = [[toks[i][j][:lengths_np[i, j]] for j in range(n)] for i in range(len(ids))]
        names = [[REASON_NAMES[r] for r in row] for row in reasons.tolist()]
        return SampleBatch(out, lengths_np.astype(np.int64), names, self.tokenizer, stats), tokens
