"""The kernels the engine calls: interface A (sampling) and B (attention)."""
try:
    from fastpass.sampling import sample
except ImportError:  # TEMPORARY until fastpass/sampling.py lands
    from fastpass.engine._shim_ops import sample
try:
    from fastpass.attention import decode_attention, prefill_attention
except ImportError:  # TEMPORARY until fastpass/attention.py lands
    from fastpass.engine._shim_ops import decode_attention, prefill_attention

__all__ = ["sample", "prefill_attention", "decode_attention"]
