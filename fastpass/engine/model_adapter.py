"""Runs a Hugging Face decoder-only model on fastpass's KV store through transformers' attention
interface: prompts are prefilled packed (once each), decode feeds one token per sequence."""
from __future__ import annotations

import contextlib
import inspect

import torch

from fastpass.engine._ops import decode_attention, prefill_attention

ATTN_NAME = "fastpass"
CPU_MIN_BATCH = 4
# config attributes whose attention semantics the split kernels do not implement
_UNSUPPORTED_CONFIG = {
    "attention_chunk_size": "chunked local attention",
    "use_bidirectional_attention": "bidirectional attention",
}
_UNSUPPORTED_KWARGS = ("s_aux", "sinks", "attention_chunk_size", "block_sequence_ids")
# optional size hints that keep the triton tiers free of host syncs (graph capture)
_PREFILL_HINT = "max_seqlen" in inspect.signature(prefill_attention).parameters
_DECODE_HINT = "max_seqs_per_prompt" in inspect.signature(decode_attention).parameters


def _fastpass_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0,
                        sliding_window=None, softcap=None, fastpass_kv=None, **kwargs):
    store = fastpass_kv
    if store is None:
        raise RuntimeError("the 'fastpass' attention runs only inside fastpass.generate / fastpass.Sampler; "
                           "call model.set_attn_implementation('sdpa') to use the model directly")
    for name in _UNSUPPORTED_KWARGS:
        if kwargs.get(name) is not None or getattr(module, name, None) is not None:
            raise ValueError(f"{type(module).__name__} uses {name!r}, which fastpass attention does not "
                             "implement: use HF generate for this model")
    scale = float(scaling) if scaling is not None else query.shape[-1] ** -0.5
    softcap = float(softcap or 0.0)
    window = int(sliding_window or 0)
    layer = module.layer_idx
    if store.mode == "prefill":
        q = query[0].transpose(0, 1).contiguous()
        k = key[0].transpose(0, 1).contiguous()
        v = value[0].transpose(0, 1).contiguous()
        store.store_prefix(layer, k, v)
        hint = {"max_seqlen": store.max_prefill_len} if _PREFILL_HINT else {}
        out = prefill_attention(q, k, v, store.cu_seqlens, scale, softcap=softcap, sliding_window=window,
                                backend=store.prefill_backend, **hint)
        return out.unsqueeze(0), None
    store.store_suffix(layer, key[:, :, 0], value[:, :, 0])
    hint = {"max_seqs_per_prompt": store.max_seqs_per_prompt} if _DECODE_HINT else {}
    out = decode_attention(query[:, :, 0], store.prefix_k[layer], store.prefix_v[layer], store.prefix_lens,
                           store.suffix_k[layer], store.suffix_v[layer], store.suffix_lens,
                           store.seq_offsets, scale, softcap=softcap, sliding_window=window,
                           backend=store.backend, suffix_rows=store.suffix_rows, **hint)
    return out.unsqueeze(1), None


_registered = False


def _register() -> None:
    global _registered
    if not _registered:
        from transformers import AttentionInterface

        AttentionInterface.register(ATTN_NAME, _fastpass_attention)
        _registered = True


def check_supported(model) -> None:
    """Raise one clear error when ``model`` cannot run on fastpass attention."""
    cfg = getattr(model, "config", None)
    if cfg is None or not hasattr(model, "get_output_embeddings"):
        raise TypeError(f"expected a Hugging Face causal LM (AutoModelForCausalLM), got {type(model).__name__}")
    if getattr(cfg, "is_encoder_decoder", False):
        raise ValueError(f"{type(model).__name__} is an encoder-decoder model: fastpass samples decoder-only "
                         "models")
    if model.get_output_embeddings() is None:
        raise ValueError(f"{type(model).__name__} has no LM head: load it with AutoModelForCausalLM")
    can_set = getattr(model, "_can_set_attn_implementation", None)
    ok = can_set() if callable(can_set) else getattr(model, "_supports_attention_backend", False)
    if not ok:
        raise ValueError(f"{type(model).__name__} does not use transformers' AttentionInterface, so fastpass "
                         "cannot plug its attention in: use HF generate for this model")
    text = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    for attr, what in _UNSUPPORTED_CONFIG.items():
        if getattr(text, attr, None):
            raise ValueError(f"{type(model).__name__} uses {what} ({attr}), which fastpass does not implement: "
                             "use HF generate for this model")


class ModelAdapter:
    """Prefill and decode forwards of one model on a :class:`~fastpass.engine.kv_store.KVStore`."""

    def __init__(self, model, prefill_token_budget: int | None = None):
        check_supported(model)
        _register()
        self.model = model
        cfg = model.config
        self.text_config = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.vocab_size = int(model.get_output_embeddings().weight.shape[0])
        self.max_positions = getattr(self.text_config, "max_position_embeddings", None)
        self.prefill_token_budget = prefill_token_budget or (8192 if self.device.type == "cuda" else 2048)
        # CPU GEMMs run at least this many rows: on SSE/AVX hosts oneDNN gives a lone row other bits
        # than the same row in a batch, so a sample's logits would depend on what shares its step
        self.min_batch = CPU_MIN_BATCH if self.device.type == "cpu" else 1

    def kv_bytes_per_token(self) -> int:
        t = self.text_config
        heads = t.num_attention_heads
        kv_heads = getattr(t, "num_key_value_heads", None) or heads
        head_dim = getattr(t, "head_dim", None) or t.hidden_size // heads
        return 2 * t.num_hidden_layers * kv_heads * head_dim * torch.finfo(self.dtype).bits // 8

    def weight_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.model.parameters())

    @contextlib.contextmanager
    def attached(self):
        """Switch the model to fastpass attention (eval mode) for the block, then restore it."""
        model = self.model
        original, training = model.config._attn_implementation, model.training
        model.set_attn_implementation(ATTN_NAME)
        if model.config._attn_implementation != ATTN_NAME:
            model.set_attn_implementation(original)
            raise ValueError(f"{type(model).__name__} refused attn_implementation={ATTN_NAME!r}: "
                             "use HF generate for this model")
        model.eval()
        try:
            with torch.inference_mode():
                yield self
        finally:
            model.set_attn_implementation(original)
            model.train(training)

    def prefill(self, store, prompts: list[list[int]], slots: list[int] | None = None) -> torch.Tensor:
        """Prefill every prompt once into ``store`` (prompt i into prefix slot ``slots[i]``, default
        i); returns last-position logits [P, V]."""
        slots = list(range(len(prompts))) if slots is None else slots
        out, group, group_tokens = [], [], 0
        for i, p in enumerate(prompts):
            if group and group_tokens + len(p) > self.prefill_token_budget:
                out.append(self._prefill_group(store, prompts, group, slots))
                group, group_tokens = [], 0
            group.append(i)
            group_tokens += len(p)
        out.append(self._prefill_group(store, prompts, group, slots))
        return torch.cat(out, 0)

    def _prefill_group(self, store, prompts, ids: list[int], slots: list[int]) -> torch.Tensor:
        lens = [len(prompts[i]) for i in ids]
        flat = [t for i in ids for t in prompts[i]]
        dev = self.device
        input_ids = torch.tensor(flat, dtype=torch.long, device=dev)[None]
        positions = torch.cat([torch.arange(n, device=dev) for n in lens])[None]
        last = torch.tensor(lens, device=dev).cumsum(0) - 1
        if len(ids) < self.min_batch:  # repeated rows: the LM head's batch invariance (CPU)
            last = torch.cat([last, last[-1:].expand(self.min_batch - len(ids))])
        store.begin_prefill([slots[i] for i in ids], lens)
        res = self.model(input_ids=input_ids, position_ids=positions, use_cache=False, fastpass_kv=store,
                         logits_to_keep=last)
        return res.logits[0, :len(ids)]

    def decode(self, store, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """One token per sequence (tokens, positions: [N]); returns logits [N, V]. No host sync."""
        res = self.model(input_ids=tokens[:, None], position_ids=positions[:, None], use_cache=False,
                         fastpass_kv=store)
        return res.logits[:, -1]
