"""The kernels the engine calls: interface A (sampling) and B (attention)."""
from fastpass.attention import decode_attention, prefill_attention

try:
    from fastpass.sampling import sample
except ImportError:  # TEMPORARY until fastpass/sampling.py lands
    from fastpass.engine._shim_ops import sample

__all__ = ["sample", "prefill_attention", "decode_attention"]
