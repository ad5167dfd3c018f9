"""Engine on a CUDA GPU (marker ``gpu``): e2e against HF generate, bf16 split-attention logits
against a full HF forward, the captured-graph decode against eager, fresh randomness per replay.

Tolerances: fp32 greedy (TF32 off) must equal HF token for token on at least 90% of rows (a
near-tie can flip an argmax when kernels sum in another order; every row must agree on its first
token). bf16 logits: mean |diff| <= 2% and max |diff| <= 15% of the reference logits' std."""
import contextlib

import pytest
import torch

import fastpass as fp
from fastpass.engine.tiny_models import tiny_model

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def _no_tf32():
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


@contextlib.contextmanager
def _reference_attention(model):
    """The reference (HF generate, full forward) in eager attention when the model soft-caps its
    attention logits: transformers 5.17's SDPA path ignores ``softcap`` (Gemma 2)."""
    before = model.config._attn_implementation
    if getattr(model.config, "attn_logit_softcapping", None):
        model.set_attn_implementation("eager")
    try:
        yield model
    finally:
        model.set_attn_implementation(before)


def _left_padded(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    L = max(lengths)
    ids = torch.zeros(len(lengths), L, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        ids[i, L - n:] = torch.randint(1, 111, (n,), generator=g)
        mask[i, L - n:] = 1
    return ids.cuda(), mask.cuda()


@pytest.mark.parametrize("family", ["llama", "qwen2", "gemma2"])
def test_e2e_greedy_matches_hf_on_gpu(family):
    model = tiny_model(family, seed=1, device="cuda")
    ids, mask = _left_padded([17, 5, 30, 9, 1], seed=2)
    with _reference_attention(model):
        want = model.generate(ids, attention_mask=mask, max_new_tokens=24, do_sample=False, eos_token_id=None,
                              pad_token_id=0).repeat_interleave(3, 0)
    got = fp.generate(model, ids, mask, num_return_sequences=3, max_new_tokens=24, do_sample=True, top_k=1,
                      seed=0)
    assert got.device.type == "cuda" and got.shape == want.shape
    L = ids.shape[1]
    assert torch.equal(got[:, :L + 1], want[:, :L + 1])
    rows_equal = (got == want).all(dim=1).float().mean().item()
    assert rows_equal >= 0.9, rows_equal


@pytest.mark.parametrize("family", ["llama", "qwen2", "gemma2"])
def test_bf16_split_logits_match_full_forward(family):
    from fastpass.engine.kv_store import KVStore
    from fastpass.engine.model_adapter import ModelAdapter

    model = tiny_model(family, seed=3, dtype=torch.bfloat16, device="cuda")
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(1, 111, (n,), generator=g).tolist() for n in (40, 7)]
    suffixes = torch.randint(1, 111, (8, 6), generator=g).cuda()  # 4 samples per prompt
    adapter = ModelAdapter(model)
    store = KVStore([40, 7], [4, 4], 6, "cuda")
    with adapter.attached():
        adapter.prefill(store, prompts)
        store.begin_decode()
        base = store.prefix_lens.long()[store.prompt_of_seq]
        steps = []
        for s in range(6):
            store.set_step(torch.tensor(s, device="cuda"))
            steps.append(adapter.decode(store, suffixes[:, s], base + s).float())
    steps = torch.stack(steps, 1)
    with torch.no_grad(), _reference_attention(model):
        for row in range(8):
            prompt = prompts[row // 4]
            seq = torch.tensor(prompt, device="cuda").tolist() + suffixes[row].tolist()
            ref = model(torch.tensor([seq], device="cuda")).logits[0, len(prompt):].float()
            diff = (steps[row] - ref).abs()
            scale = ref.std().item()
            assert diff.mean().item() <= 0.02 * scale and diff.max().item() <= 0.15 * scale


def test_graph_decode_equals_eager_and_stays_random():
    model = tiny_model("llama", seed=4, device="cuda")
    prompts = [[1, 2, 3, 4, 5], [6, 7, 8], [9] * 12]
    kw = dict(n=8, max_new_tokens=40, temperature=1.0, seed=9)
    graphed = fp.Sampler(model, use_graph=True)
    a = graphed.sample(prompts, **kw)
    assert graphed.last_stats["graph"] is True
    eager = fp.Sampler(model, use_graph=False)
    b = eager.sample(prompts, **kw)
    assert eager.last_stats["graph"] is False
    assert a.tokens == b.tokens
    lockstep = fp.Sampler(model, use_graph=True, continuous=False)
    assert lockstep.sample(prompts, **kw).tokens == a.tokens and lockstep.last_stats["graph_chunks"] == 1
    # replays draw fresh numbers: later steps are not copies of earlier ones, samples differ
    for per_prompt in a.tokens:
        assert len({tuple(t) for t in per_prompt}) == len(per_prompt)
        for t in per_prompt:
            assert len(set(t[10:])) > 5
    c = graphed.sample(prompts, **{**kw, "seed": 10})
    assert c.tokens != a.tokens


def test_graph_decode_with_eos_and_topk_filters():
    model = tiny_model("qwen2", seed=5, device="cuda")
    prompts = [[3, 4, 5], [6, 7]]
    kw = dict(n=16, max_new_tokens=30, temperature=0.9, top_k=8, top_p=0.9, min_p=0.02, seed=1)
    probe = fp.Sampler(model, use_graph=False).sample(prompts, **kw)
    kw["eos_token_id"] = probe.tokens[0][0][4]
    a = fp.Sampler(model, use_graph=True).sample(prompts, **kw)
    b = fp.Sampler(model, use_graph=False).sample(prompts, **kw)
    assert a.tokens == b.tokens and a.finish_reasons == b.finish_reasons
    assert a.finish_reasons[0][0] == "eos"


@pytest.mark.parametrize("rows", [5, 24])
def test_continuous_graphs_refill_rows_and_equal_lockstep(rows):
    """Long-tailed lengths (a frequent early token is EOS): rows are refilled between graph replays
    of bucketed batch sizes; the samples equal the lockstep decoder's, graph or not."""
    model = tiny_model("llama", seed=6, device="cuda")
    g = torch.Generator().manual_seed(3)
    prompts = [torch.randint(1, 111, (n,), generator=g).tolist() for n in (5, 12, 3, 9, 20, 7)]
    kw = dict(n=6, max_new_tokens=24, temperature=1.0, top_k=20, seed=2)
    probe = fp.Sampler(model, use_graph=False).sample(prompts, **{**kw, "max_new_tokens": 4})
    counts = {}
    for row in probe.tokens:
        for toks in row:
            for t in set(toks):
                counts[t] = counts.get(t, 0) + 1
    kw["eos_token_id"] = sorted(counts, key=lambda t: -counts[t])[:2]
    want = fp.Sampler(model, use_graph=False, continuous=False).sample(prompts, **kw)
    sampler = fp.Sampler(model, use_graph=True, max_rows=rows)
    got = sampler.sample(prompts, **kw)
    assert got.tokens == want.tokens and got.finish_reasons == want.finish_reasons
    st = sampler.last_stats
    assert st["graph"] is True and st["rows"] == rows and st["prefills"] >= 2
    lengths = want.lengths.ravel()
    assert lengths.min() < 6 and lengths.max() == 24
