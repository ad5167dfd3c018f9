"""The kernels the engine calls: interface A (sampling) and B (attention)."""
from fastpass.attention import decode_attention, prefill_attention
from fastpass.sampling import sample

__all__ = ["sample", "prefill_attention", "decode_attention"]
