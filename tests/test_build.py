"""The build and the tier selection: what a fresh install must give."""
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fastpass import _backend

ROOT = Path(__file__).resolve().parents[1]


def test_native_module_imports_and_reports_cuda_build():
    C = _backend.native()
    assert isinstance(C.built_with_cuda, bool)
    if shutil.which("nvcc") and os.environ.get("FASTPASS_CUDA", "AUTO") != "0":
        # nvcc is on the build machines: CI must have compiled every .cu file.
        assert C.built_with_cuda, "nvcc is on PATH but fastpass._C was built without CUDA"


def test_gpu_kernel_without_gpu_raises_one_clear_error():
    C = _backend.native()
    if _backend.has_cuda_kernels():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="(no CUDA device is usable|built without CUDA)"):
        C.passk_cuda(0, 0, 0, 0, 0, 0, 0, 0, 0, 0)


def test_triton_kernels_installed_as_subpackage_only(tmp_path):
    # Run outside the checkout, so only what the install provides is importable.
    code = ("import importlib.util as u\n"
            "s = u.find_spec('fastpass.triton_kernels'); print(s.origin)\n"
            "t = u.find_spec('triton_kernels'); print(t.origin if t else None)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    ours, top = r.stdout.splitlines()
    assert Path(ours).parent.name == "triton_kernels"
    # A top-level `triton_kernels` (vLLM's dependency) must never be ours.
    assert top == "None" or Path(top).parent != Path(ours).parent


def test_backend_env_forces_tier(monkeypatch):
    monkeypatch.setenv("FASTPASS_BACKEND", "reference")
    assert _backend.choose("op", ("cuda", "cpu", "reference"), "cpu") == "reference"
    monkeypatch.setenv("FASTPASS_BACKEND", "cuda")
    if not _backend.has_cuda_kernels():
        with pytest.raises(_backend.BackendUnavailable, match="cuda"):
            _backend.choose("op", ("cuda", "cpu", "reference"), "cpu")
    monkeypatch.setenv("FASTPASS_BACKEND", "triton")
    with pytest.raises(_backend.BackendUnavailable, match="has no 'triton' tier"):
        _backend.choose("op", ("cuda", "cpu", "reference"), "cpu")
    monkeypatch.setenv("FASTPASS_BACKEND", "bogus")
    with pytest.raises(ValueError, match="unknown backend"):
        _backend.choose("op", ("cpu", "reference"), "cpu")


def test_default_choice_prefers_compiled_cpu_tier(monkeypatch):
    monkeypatch.delenv("FASTPASS_BACKEND", raising=False)
    assert _backend.choose("op", ("cuda", "cpu", "reference"), "cpu") == "cpu"
    assert _backend.choose("op", ("cuda", "reference"), "cpu") == "reference"


def test_import_needs_no_native_module_until_a_kernel_runs(tmp_path):
    # A checkout whose _C is missing still imports and computes through the reference tier.
    code = ("import sys, importlib.abc\n"
            "class Block(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path, target=None):\n"
            "        if name == 'fastpass._C': raise ImportError('blocked for the test')\n"
            "sys.meta_path.insert(0, Block())\n"
            "import fastpass as fp\n"
            "print(fp.pass_at_k([10], [3], 2)[0])\n"
            "from fastpass import _backend\n"
            "try:\n    _backend.native()\nexcept _backend.BackendUnavailable as e:\n    print('ERR', e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert abs(float(lines[0]) - (1 - 7 * 6 / (10 * 9))) < 1e-15
    assert lines[1].startswith("ERR fastpass._C is not built") and "pip install -e ." in lines[1]
