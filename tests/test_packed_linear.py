"""oneDNN-packed linear weights on CPU: same results as the model's own layers (within fp rounding),
repacked when weights change, off for small models, the model restored afterwards."""
import pytest
import torch

import fastpass as fp
from fastpass.engine import packed_linear
from fastpass.engine.tiny_models import tiny_model

pytestmark = pytest.mark.skipif(not packed_linear.available(), reason="torch built without oneDNN")


def _linears(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.Linear)]


@pytest.mark.parametrize("dtype,atol,rtol", [(torch.float32, 1e-5, 1e-5), (torch.bfloat16, 2e-2, 2e-2)])
@pytest.mark.parametrize("family", ["llama", "qwen2"])  # qwen2: q/k/v carry a bias
def test_packed_forward_matches_model(family, dtype, atol, rtol):
    if dtype not in packed_linear._dtypes():
        pytest.skip("oneDNN has no native bf16 GEMM on this CPU: bf16 layers are not packed")
    model = tiny_model(family, seed=1, dtype=dtype)
    ids = torch.randint(1, 111, (3, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = model(ids).logits.float()
        packed = packed_linear.PackedLinears(model)
        assert len(packed.modules) == len(_linears(model))
        with packed.installed():
            got = model(ids).logits.float()
    torch.testing.assert_close(got, want, atol=atol, rtol=rtol)
    assert all("forward" not in m.__dict__ for m in _linears(model)), "forwards must be restored"


def test_repacked_after_in_place_update_and_replacement():
    model = tiny_model("llama", seed=2)
    packed = packed_linear.PackedLinears(model)
    assert packed.refresh() == 0
    lin = model.model.layers[0].mlp.down_proj
    with torch.no_grad():
        lin.weight.mul_(-3.0)
    model.lm_head.weight = torch.nn.Parameter(torch.randn_like(model.lm_head.weight))  # unties, replaces
    ids = torch.tensor([[3, 4, 5, 6]])
    with torch.no_grad():
        want = model(ids).logits
        with packed.installed():  # installed() refreshes
            got = model(ids).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert packed.refresh() == 0


def test_bf16_packed_only_with_native_bf16(monkeypatch):
    model = tiny_model("llama", dtype=torch.bfloat16)
    monkeypatch.setattr(packed_linear, "_dtypes", lambda: (torch.float32,))
    assert packed_linear.PackedLinears(model).modules == []


def test_subclasses_and_hooked_layers_keep_their_forward():
    class LoRALinear(torch.nn.Linear):
        pass

    net = torch.nn.Sequential(torch.nn.Linear(8, 8), LoRALinear(8, 8), torch.nn.Linear(8, 8), torch.nn.Linear(8, 8))
    net[2].register_forward_hook(lambda *a: None)
    net[3].forward = lambda x: x  # somebody's own patch
    packed = packed_linear.PackedLinears(net)
    assert packed.modules == [net[0]]
    with packed.installed():
        assert "forward" in net[0].__dict__
    assert "forward" not in net[0].__dict__ and "forward" in net[3].__dict__


def test_rescans_layers_hooked_or_swapped_after_packing():
    net = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 8))
    packed = packed_linear.PackedLinears(net)
    assert packed.modules == [net[0], net[1]]
    net[0].register_forward_pre_hook(lambda *a: None)  # e.g. offloading added later
    net[1] = torch.nn.Linear(8, 8)
    assert packed.refresh() == 1 and packed.modules == [net[1]]
    x = torch.randn(3, 8)
    with torch.no_grad():
        want = net(x)
        with packed.installed():
            assert "forward" in net[1].__dict__ and "forward" not in net[0].__dict__
            got = net(x)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)


def test_enabled_for_every_model_with_memory_to_spare(monkeypatch):
    model = tiny_model("llama")
    monkeypatch.delenv("FASTPASS_PACK_WEIGHTS", raising=False)
    monkeypatch.setattr(packed_linear, "_mem_available", lambda: 1 << 40)
    assert packed_linear.enabled(model, None)  # ~100 KB of weights: packed too (batch invariance)
    monkeypatch.setattr(packed_linear, "_mem_available", lambda: 1000)  # no room for a copy
    assert not packed_linear.enabled(model, None)
    assert packed_linear.enabled(model, True) and not packed_linear.enabled(model, False)
    monkeypatch.setenv("FASTPASS_PACK_WEIGHTS", "0")
    monkeypatch.setattr(packed_linear, "_mem_available", lambda: 1 << 40)
    assert not packed_linear.enabled(model, None)
    assert packed_linear.enabled(model, True), "an explicit argument beats the environment"


def test_sampler_with_packed_weights_matches_hf_greedy():
    model = tiny_model("qwen2", seed=5)
    ids = torch.tensor([[0, 0, 7, 8, 9], [3, 4, 5, 6, 2]])
    mask = (ids != 0).long()
    want = model.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=8, min_new_tokens=8)
    sampler = fp.Sampler(model, pack_weights=True)
    assert sampler._packed is packed_linear.for_model(model), "one packed copy per model"
    prompts = [[7, 8, 9], [3, 4, 5, 6, 2]]
    got = sampler.sample(prompts, n=2, max_new_tokens=8, temperature=0.0)
    for i in range(2):
        assert got.tokens[i] == [want[i, 5:].tolist()] * 2
    assert all("forward" not in m.__dict__ for m in _linears(model))
