"""Tiny random-init decoder models built from config objects (no hub access): tests and smoke checks."""
from __future__ import annotations

import torch

COMMON = dict(vocab_size=111, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=512, initializer_range=0.2, pad_token_id=0,
              eos_token_id=None, bos_token_id=None)


def _cfg(family: str):
    import transformers as tf

    if family == "llama":
        return tf.LlamaConfig(**COMMON)
    if family == "qwen2":
        return tf.Qwen2Config(**COMMON)
    if family == "qwen3":
        return tf.Qwen3Config(**COMMON, head_dim=16)
    if family == "mistral":  # every layer windowed
        return tf.MistralConfig(**COMMON, sliding_window=5)
    if family == "phi3":
        return tf.Phi3Config(**COMMON, sliding_window=6)
    if family == "gemma2":  # softcapping, alternating sliding/full layers, query_pre_attn_scalar scaling
        return tf.Gemma2Config(**COMMON, head_dim=16, sliding_window=4, query_pre_attn_scalar=24,
                               attn_logit_softcapping=5.0, final_logit_softcapping=30.0)
    if family == "gemma3":
        return tf.Gemma3TextConfig(**COMMON, head_dim=16, sliding_window=4, query_pre_attn_scalar=24,
                                   layer_types=["sliding_attention", "full_attention"])
    raise ValueError(family)


def tiny_model(family: str, seed: int = 0, dtype=torch.float32, device="cpu"):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    cfg = _cfg(family)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    return model.eval()
