"""CPU linear layers on oneDNN-packed weights.

A decode step multiplies a few rows (the live samples) by every weight matrix. Torch's default CPU
GEMM reaches ~8 GB/s of weight traffic at 16 rows on the 2-core build machine; the same GEMMs on
weights reordered once into oneDNN's blocked layout run ~2x faster (the layout inductor's CPU
freezing pass uses). The packed copies live beside the model's weights (the model is never
modified) and are repacked when a weight changes in place or is replaced.

They are also what makes the CPU forward batch-invariant: oneDNN's packed GEMM gives every row the
same bits whatever the number of rows (from 2; on AVX2 from 1), their position and the thread count
(checked for M up to 2048 on 1 and 2 threads), while torch's default CPU GEMM takes other kernels for
a few rows (M < 4, and 5-7, 9-11 on 2 threads). So a sample's logits would depend on which samples
share its steps, and a resumed screen would draw other samples than an uninterrupted one. Hence
every model is packed, however small, and the engine never runs fewer than 4 rows through a CPU GEMM
(model_adapter.CPU_MIN_BATCH)."""
from __future__ import annotations

import contextlib
import functools
import os
import weakref

import torch

_DTYPES = (torch.float32, torch.bfloat16)
_BATCH_HINT = 64  # oneDNN picks its blocking for this many rows; measured flat from 1 to 64 rows


def available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")


def _mem_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


@functools.lru_cache(maxsize=None)
def _dtypes() -> tuple:
    # bf16 only where oneDNN has native bf16 GEMMs (AVX512-BF16 / AMX); emulated it can lose to torch's
    bf16 = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return _DTYPES if bf16 is not None and bf16() else (torch.float32,)


def _packable(module) -> bool:
    # exact nn.Linear only: subclasses (quantised, LoRA), hooked modules (offloading) and modules whose
    # forward someone already replaced keep their forward
    return (type(module) is torch.nn.Linear and module.weight.dtype in _dtypes()
            and module.weight.device.type == "cpu" and not hasattr(module, "_hf_hook")
            and not module._forward_hooks and not module._forward_pre_hooks and "forward" not in module.__dict__)


def worth_packing(model) -> bool:
    """True on CPU for float32 (bfloat16 where native) models with memory for a copy."""
    if not available():
        return False
    nbytes = sum(m.weight.numel() * m.weight.element_size() for m in model.modules() if _packable(m))
    free = _mem_available()
    return nbytes > 0 and (free is None or 2 * nbytes < free)


class PackedLinears:
    """Packed copies of a model's ``nn.Linear`` weights; :meth:`installed` routes their forwards there."""

    def __init__(self, model):
        self._model = weakref.ref(model)  # not a strong ref: for_model's cache is keyed weakly on the model
        self.modules: list = []
        self._packed: dict[int, tuple[tuple, torch.Tensor]] = {}
        self.refresh()

    @staticmethod
    def _key(w: torch.Tensor) -> tuple:
        return (w.data_ptr(), w._version, tuple(w.shape), w.dtype)

    def refresh(self) -> int:
        """Rescan the model (layers may have been swapped or hooked since) and repack weights that changed
        since they were packed; returns how many were packed."""
        model = self._model()
        self.modules = [m for m in model.modules() if _packable(m)] if model is not None else []
        live = {id(m) for m in self.modules}
        self._packed = {k: v for k, v in self._packed.items() if k in live}
        count = 0
        with torch.no_grad():
            for m in self.modules:
                key = self._key(m.weight)
                old = self._packed.get(id(m))
                if old is None or old[0] != key:
                    self._packed[id(m)] = (key, torch.ops.mkldnn._reorder_linear_weight(m.weight.detach(),
                                                                                         _BATCH_HINT))
                    count += 1
        return count

    def nbytes(self) -> int:
        return sum(m.weight.numel() * m.weight.element_size() for m in self.modules)

    @contextlib.contextmanager
    def installed(self):
        """Inside the block every packed module computes ``x @ W.T + b`` with its packed weight."""
        self.refresh()
        patched = list(self.modules)
        for m in patched:
            m.forward = _packed_forward(self._packed[id(m)][1], m.bias)
        try:
            yield self
        finally:
            for m in patched:
                del m.forward  # back to the class's forward


def _packed_forward(packed: torch.Tensor, bias):
    linear = torch.ops.mkldnn._linear_pointwise

    def forward(x):
        return linear(x, packed, bias, "none", [], "")

    return forward


def enabled(model, requested: bool | None) -> bool:
    """``requested`` None: decide by :func:`worth_packing` (``FASTPASS_PACK_WEIGHTS=0/1`` overrides)."""
    env = os.environ.get("FASTPASS_PACK_WEIGHTS")
    if requested is None and env in ("0", "1"):
        requested = env == "1"
    if requested and not available():
        raise RuntimeError("pack_weights=True needs torch built with oneDNN (torch.backends.mkldnn)")
    return worth_packing(model) if requested is None else bool(requested)


_BY_MODEL: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def for_model(model) -> PackedLinears:
    """One packed copy per model (``fp.generate`` builds a Sampler per call; packing is not repeated)."""
    packed = _BY_MODEL.get(model)
    if packed is None:
        packed = _BY_MODEL[model] = PackedLinears(model)
    return packed
