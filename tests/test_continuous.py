"""Continuous batching: token-for-token the samples of the lockstep decoder, whatever the number of
rows, slots, padding to graph buckets, stop rule, kernel tier or out-of-memory retries; rows are
refilled as samples end; prompts stream out as they complete; HF's repetition penalty."""
import pytest
import torch

import fastpass as fp
from fastpass import _backend
from fastpass.engine import planning
from fastpass.engine.scheduler import ContinuousDecoder, PromptResult, _bucket
from fastpass.engine.tiny_models import tiny_model

TIERS = ["reference"] + (["cpu"] if _backend.usable("cpu", "cpu") else [])


def _prompts(count, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(1, 111, (int(n),), generator=g).tolist()
            for n in torch.randint(2, 14, (count,), generator=g)]


def _long_tail_eos(model, prompts, n, k=3, seed=3):
    """Token ids most samples draw early: as EOS they make lengths long-tailed (tiny random models
    have no real EOS)."""
    probe = fp.Sampler(model).sample(prompts, n=n, max_new_tokens=6, temperature=1.0, seed=seed)
    counts = {}
    for row in probe.tokens:
        for toks in row:
            for t in set(toks):
                counts[t] = counts.get(t, 0) + 1
    return sorted(counts, key=lambda t: -counts[t])[:k]


def _sample(model, prompts, continuous, static_batch=None, **kw):
    sampler = fp.Sampler(model, continuous=continuous, max_rows=kw.pop("max_rows", None),
                         backend=kw.pop("backend", None))
    n = kw.pop("n")
    if not static_batch:
        return sampler.sample(prompts, n=n, **kw), sampler.last_stats
    ids, streams, params = sampler._prepare(prompts, n, kw.pop("max_new_tokens"), kw.pop("temperature", 1.0),
                                            kw.pop("top_k", 0), 1.0, 0.0, kw.pop("seed", 0), None, None,
                                            kw.pop("eos_token_id", None), None, 1.0, False)
    assert not kw
    params.static_batch = True
    tokens = torch.full((len(ids), n, params.max_new_tokens), params.pad_id, dtype=torch.int64)
    lengths, reasons = torch.zeros(len(ids), n, dtype=torch.int64), torch.zeros(len(ids), n, dtype=torch.int64)
    for i, t, length, r in sampler._decode(ids, streams, n, params):
        tokens[i], lengths[i], reasons[i] = t, length, r
    return sampler._batch(tokens, lengths, reasons), sampler.last_stats


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("rows", [1, 3, 8, 40])
def test_same_samples_as_lockstep_on_long_tailed_job(tier, rows):
    model = tiny_model("llama", seed=11)
    prompts = _prompts(7, seed=1)
    kw = dict(n=5, max_new_tokens=14, temperature=1.0, seed=9, backend=tier)
    kw["eos_token_id"] = _long_tail_eos(model, prompts, 5)
    want, _ = _sample(model, prompts, continuous=False, **kw)
    got, stats = _sample(model, prompts, continuous=True, max_rows=rows, **kw)
    assert got.tokens == want.tokens
    assert got.finish_reasons == want.finish_reasons
    assert (got.lengths == want.lengths).all()
    lengths = want.lengths.ravel()
    assert lengths.min() < 4 and lengths.max() == 14  # the job is long-tailed
    assert stats["rows"] == min(rows, 35)
    if rows < 35:
        assert stats["prefills"] > 1 and stats["refills"] > 1  # prompts admitted as rows freed


@pytest.mark.parametrize("family", ["qwen2", "gemma2"])  # gemma2: softcap and sliding windows
def test_same_samples_with_static_bucket_padding(family):
    """CUDA replays graphs of bucketed batch sizes with idle rows riding along; the same shapes run
    here without graphs."""
    model = tiny_model(family, seed=2)
    prompts = _prompts(6, seed=4)
    kw = dict(n=4, max_new_tokens=10, temperature=1.0, top_k=8, seed=5)
    kw["eos_token_id"] = _long_tail_eos(model, prompts, 4)
    want, _ = _sample(model, prompts, continuous=False, **kw)
    for rows in (5, 11):
        got, stats = _sample(model, prompts, continuous=True, static_batch=True, max_rows=rows, **kw)
        assert got.tokens == want.tokens and got.finish_reasons == want.finish_reasons
        assert stats["row_steps"] > stats["live_row_steps"]  # padded rows were computed and ignored


@pytest.mark.skipif(not _backend.usable("triton", "cpu"), reason="needs triton with TRITON_INTERPRET=1")
def test_triton_tier_same_samples_as_lockstep():
    model = tiny_model("llama", seed=6)
    prompts = _prompts(4, seed=2)
    kw = dict(n=3, max_new_tokens=6, temperature=1.0, top_k=10, seed=4, backend="triton")
    kw["eos_token_id"] = _long_tail_eos(model, prompts, 3)
    want, _ = _sample(model, prompts, continuous=False, **kw)
    got, _ = _sample(model, prompts, continuous=True, max_rows=4, **kw)
    assert got.tokens == want.tokens


def test_n_larger_than_rows_and_single_token_samples():
    model = tiny_model("qwen3", seed=1)
    prompts = _prompts(3, seed=8)
    for kw in (dict(n=9, max_new_tokens=7), dict(n=4, max_new_tokens=1)):
        want, _ = _sample(model, prompts, continuous=False, seed=2, **kw)
        got, _ = _sample(model, prompts, continuous=True, max_rows=4, seed=2, **kw)
        assert got.tokens == want.tokens and got.finish_reasons == want.finish_reasons


def test_stream_yields_each_prompt_once_with_its_samples():
    model = tiny_model("llama", seed=3)
    prompts = _prompts(6, seed=6)
    kw = dict(n=4, max_new_tokens=12, temperature=1.0, seed=1)
    kw["eos_token_id"] = _long_tail_eos(model, prompts, 4)
    whole = fp.Sampler(model).sample(prompts, **kw)
    seen, progress = [], []
    sampler = fp.Sampler(model, max_rows=6)
    for i, batch in sampler.stream(prompts, on_progress=lambda s, t: progress.append((s, t)), **kw):
        seen.append(i)
        assert batch.tokens[0] == whole.tokens[i] and batch.finish_reasons[0] == whole.finish_reasons[i]
    assert sorted(seen) == list(range(6))
    assert progress[-1] == (24, whole.num_tokens) and len(progress) >= 6  # as samples finish, not per prompt
    assert all(a[0] < b[0] and a[1] < b[1] for a, b in zip(progress, progress[1:]))


def test_rows_stay_busy_on_a_long_tailed_job():
    model = tiny_model("llama", seed=5)
    prompts = _prompts(12, seed=3)
    kw = dict(n=4, max_new_tokens=30, temperature=1.0, seed=7)
    kw["eos_token_id"] = _long_tail_eos(model, prompts, 4, k=2)
    batch, stats = _sample(model, prompts, continuous=True, max_rows=8, **kw)
    # on CPU a step decodes only live rows, each drawing one token (a sample's first token comes
    # from its prompt's prefill logits), padded with idle rows to 4 only in the drain ...
    assert stats["live_row_steps"] == batch.num_tokens - 12 * 4
    assert 0 <= stats["row_steps"] - stats["live_row_steps"] <= 3 * 30
    # ... and all 8 rows are live until the work runs out: at most max_new_tokens steps of drain
    assert stats["steps"] <= -(-stats["live_row_steps"] // 8) + 30
    lockstep = sum(max(batch.lengths[i:i + 2].ravel()) - 1 for i in range(0, 12, 2))  # chunks of 8 rows
    assert stats["steps"] < lockstep


def test_out_of_memory_retries_with_fewer_rows_and_keeps_finished_samples(monkeypatch):
    model = tiny_model("llama", seed=7)
    prompts = _prompts(5, seed=9)
    kw = dict(n=4, max_new_tokens=9, temperature=1.0, seed=3)
    kw["eos_token_id"] = _long_tail_eos(model, prompts, 4)
    want = fp.Sampler(model, continuous=False).sample(prompts, **kw)
    real_step = ContinuousDecoder._step
    calls = {"n": 0}

    def flaky(self, b):
        calls["n"] += 1
        if self.sample_rows > 3 and calls["n"] > 6:  # fail mid-run, after some samples have finished
            raise torch.cuda.OutOfMemoryError("simulated")
        return real_step(self, b)

    monkeypatch.setattr(ContinuousDecoder, "_step", flaky)
    sampler = fp.Sampler(model, max_rows=12)
    got = sampler.sample(prompts, **kw)
    assert got.tokens == want.tokens and got.finish_reasons == want.finish_reasons
    assert sampler.last_stats["oom_splits"] == 2 and sampler.last_stats["rows"] == 3


def test_prompt_result_missing_runs():
    res = PromptResult.empty(0, 7, 3, 0)
    res.finished[[1, 2, 5]] = True
    assert res.missing() == [(0, 1), (3, 2), (6, 1)]
    assert [_bucket(x, 100) for x in (1, 8, 9, 70, 100)] == [8, 8, 16, 100, 100]


def test_plan_continuous_fits_the_budget():
    from fastpass.engine.model_adapter import ModelAdapter

    adapter = ModelAdapter(tiny_model("llama"))
    prompts = [[1] * 50] * 10
    rows, slots = planning.plan_continuous(adapter, prompts, 16, 64, max_rows=64)
    assert (rows, slots) == (64, 10)
    per_row = planning._row_bytes(adapter, 64)
    rows, slots = planning.plan_continuous(adapter, prompts, 16, 64, max_rows=64, budget=per_row * 20)
    assert rows == 16 and slots == 4
    assert rows * per_row + slots * planning._slot_bytes(adapter, 50) <= per_row * 20


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_repetition_penalty_greedy_equals_hf(family):
    model = tiny_model(family, seed=4)
    ids = torch.tensor([[5, 9, 9, 17, 3, 40]])
    for penalty in (1.3, 0.7):
        hf = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=12,
                            repetition_penalty=penalty, eos_token_id=None, pad_token_id=0)
        ours = fp.generate(model, ids, max_new_tokens=12, do_sample=False, repetition_penalty=penalty)
        assert ours.tolist() == hf.tolist(), penalty
    plain = fp.generate(model, ids, max_new_tokens=12, do_sample=False)
    assert plain.tolist() != ours.tolist()  # the penalty changed the greedy path


def test_repetition_penalty_sampled_distribution_matches_reference():
    """One step: draws with the penalty follow softmax(penalised logits) (chi-square)."""
    scipy_stats = pytest.importorskip("scipy.stats")
    model = tiny_model("llama", seed=2)
    prompt = [4, 4, 7, 8, 9]
    n, penalty = 4000, 2.0
    batch = fp.Sampler(model).sample([prompt], n=n, max_new_tokens=1, seed=5, repetition_penalty=penalty)
    with torch.no_grad():
        logits = model(torch.tensor([prompt])).logits[0, -1].double()
    present = torch.zeros_like(logits, dtype=torch.bool)
    present[prompt] = True
    logits = torch.where(present, torch.where(logits < 0, logits * penalty, logits / penalty), logits)
    p = torch.softmax(logits, 0)
    counts = torch.bincount(torch.tensor([t[0] for t in batch.tokens[0]]), minlength=p.numel()).double()
    keep = p * n >= 5
    observed = torch.cat([counts[keep], counts[~keep].sum()[None]])
    expected = torch.cat([p[keep] * n, (p[~keep].sum() * n)[None]])
    assert scipy_stats.chisquare(observed, expected).pvalue > 1e-4
    assert counts[prompt].sum() < p[prompt].sum() * n * 1.5  # penalised tokens are drawn rarely


def test_chat_prompts_and_token_id_checks():
    model = tiny_model("llama")

    class Tok:
        chat_template = "x"

        def __len__(self):
            return 111

        def __call__(self, text, add_special_tokens=True):
            return {"input_ids": [ord(c) % 100 + 1 for c in text]}

        def apply_chat_template(self, messages, tokenize, add_generation_prompt):
            assert not tokenize and add_generation_prompt
            return "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"

    sampler = fp.Sampler(model, Tok())
    plain = sampler.sample(["hi"], n=2, max_new_tokens=3, seed=1)
    chat = sampler.sample(["hi"], n=2, max_new_tokens=3, seed=1, chat=True)
    msgs = sampler.sample([[{"role": "user", "content": "hi"}]], n=2, max_new_tokens=3, seed=1)
    assert chat.tokens == msgs.tokens and chat.tokens != plain.tokens
    with pytest.raises(TypeError, match="token ids must be ints"):
        sampler.sample([[1.7, 2]], n=1, max_new_tokens=1)
    with pytest.raises(TypeError, match="must be integers"):
        sampler.sample([torch.tensor([1.0, 2.0])], n=1, max_new_tokens=1)


def test_seeds_use_all_64_bits():
    model = tiny_model("llama", seed=1)
    kw = dict(n=4, max_new_tokens=6, temperature=1.0)
    s0 = fp.Sampler(model).sample([[3, 4]], seed=0, **kw).tokens
    s63 = fp.Sampler(model).sample([[3, 4]], seed=2**63, **kw).tokens
    smax = fp.Sampler(model).sample([[3, 4]], seed=2**64 - 1, **kw).tokens
    assert s0 != s63 and s63 != smax and s0 != smax
    with pytest.raises(ValueError, match=r"seed must lie in \[0, 18446744073709551615\]"):
        fp.Sampler(model).sample([[3, 4]], seed=2**64, **kw)
    with pytest.raises(ValueError, match="seed"):
        fp.Sampler(model).sample([[3, 4]], seed=-1, **kw)
