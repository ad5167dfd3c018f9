"""fp.generate against HF generate on tiny random models (CPU, fp32), layout and argument errors."""
import pytest
import torch

import fastpass as fp
from fastpass.engine.tiny_models import tiny_model

PAD = 0


def _left_padded(lengths, vocab=111, seed=0):
    g = torch.Generator().manual_seed(seed)
    L = max(lengths)
    ids = torch.full((len(lengths), L), PAD, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        ids[i, L - n:] = torch.randint(1, vocab, (n,), generator=g)
        mask[i, L - n:] = 1
    return ids, mask


def _hf_greedy(model, ids, mask, new, eos=None):
    return model.generate(ids, attention_mask=mask, max_new_tokens=new, do_sample=False, eos_token_id=eos,
                          pad_token_id=PAD)


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_greedy_matches_hf_left_padded(family):
    model = tiny_model(family)
    ids, mask = _left_padded([7, 3, 11, 1])
    want = _hf_greedy(model, ids, mask, 10)
    got = fp.generate(model, ids, mask, max_new_tokens=10, do_sample=False)
    assert torch.equal(got, want)
    assert model.config._attn_implementation == "sdpa"  # user-visible state restored


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_greedy_matches_hf_with_eos_and_padding(family):
    model = tiny_model(family, seed=1)
    ids, mask = _left_padded([5, 9, 2], seed=3)
    free = _hf_greedy(model, ids, mask, 12)
    eos = int(free[0, ids.shape[1] + 3])  # a token row 0 emits mid-way: HF stops that row there
    want = _hf_greedy(model, ids, mask, 12, eos=eos)
    got = fp.generate(model, ids, mask, max_new_tokens=12, do_sample=False, eos_token_id=eos)
    assert torch.equal(got, want)
    assert (got[0, ids.shape[1] + 4:] == PAD).all()


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_k_samples_with_top_k_1_equal_hf_greedy(family):
    model = tiny_model(family, seed=2)
    ids, mask = _left_padded([6, 4], seed=5)
    want = _hf_greedy(model, ids, mask, 8).repeat_interleave(3, 0)
    got = fp.generate(model, ids, mask, num_return_sequences=3, max_new_tokens=8, do_sample=True, top_k=1,
                      seed=123)
    assert got.shape == (6, ids.shape[1] + 8)
    assert torch.equal(got, want)


def test_sampled_layout_and_seed():
    model = tiny_model("llama")
    ids, mask = _left_padded([4, 6], seed=7)
    a = fp.generate(model, ids, mask, num_return_sequences=5, max_new_tokens=6, seed=1)
    b = fp.generate(model, ids, mask, num_return_sequences=5, max_new_tokens=6, seed=1)
    c = fp.generate(model, ids, mask, num_return_sequences=5, max_new_tokens=6, seed=2)
    assert a.shape == (10, ids.shape[1] + 6)
    assert torch.equal(a[:, :ids.shape[1]], ids.repeat_interleave(5, 0))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # the 5 samples of one prompt differ from each other (keyed by sample index)
    assert len({tuple(r) for r in a[:5, ids.shape[1]:].tolist()}) > 1


def test_mask_inferred_from_pad_like_hf():
    model = tiny_model("llama")
    ids, mask = _left_padded([3, 6], seed=9)
    assert torch.equal(fp.generate(model, ids, max_new_tokens=4, do_sample=False),
                       fp.generate(model, ids, mask, max_new_tokens=4, do_sample=False))


@pytest.mark.parametrize("kwargs, err, match", [
    (dict(temperature=-0.5), ValueError, "temperature"),
    (dict(top_p=0.0), ValueError, "top_p"),
    (dict(top_p=1.5), ValueError, "top_p"),
    (dict(min_p=2.0), ValueError, "min_p"),
    (dict(top_k=-1), ValueError, "top_k"),
    (dict(num_return_sequences=0), ValueError, "n must"),
    (dict(max_new_tokens=0), ValueError, "max_new_tokens"),
    (dict(max_new_tokens=1000), ValueError, "context"),
    (dict(top_k=1.5), TypeError, "top_k"),
])
def test_bad_arguments(kwargs, err, match):
    model = tiny_model("llama")
    ids, mask = _left_padded([3, 4])
    kwargs.setdefault("max_new_tokens", 4)
    with pytest.raises(err, match=match):
        fp.generate(model, ids, mask, **kwargs)


def test_bad_inputs():
    model = tiny_model("llama")
    ids, mask = _left_padded([3, 4])
    with pytest.raises(ValueError, match="left-padded"):
        fp.generate(model, ids, mask.flip(1), max_new_tokens=2)
    with pytest.raises(TypeError, match="2-D"):
        fp.generate(model, ids[0], max_new_tokens=2)
    with pytest.raises(ValueError, match="all zeros"):
        fp.generate(model, ids, torch.zeros_like(mask), max_new_tokens=2)
    with pytest.raises(ValueError, match="vocabulary"):
        fp.generate(model, torch.tensor([[5, 500]]), max_new_tokens=2)
