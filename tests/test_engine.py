"""Engine internals on CPU: split-attention logits vs full forwards for each supported family,
batch independence, chunking, finish reasons, compaction, OOM split, stop, refusals."""
import pytest
import torch

import fastpass as fp
from fastpass import _backend
from fastpass.engine import decode_loop, planning
from fastpass.engine.kv_store import KVStore
from fastpass.engine.model_adapter import ModelAdapter, _fastpass_attention
from fastpass.engine.tiny_models import tiny_model

FAMILIES = ["llama", "qwen2", "qwen3", "mistral", "phi3", "gemma2", "gemma3"]


def _split_logits(model, prompts, suffixes, backend="reference"):
    """Prefill prompts once, then teacher-force suffixes [N, S] (K rows per prompt) one step at a time."""
    k = suffixes.shape[0] // len(prompts)
    adapter = ModelAdapter(model)
    store = KVStore([len(p) for p in prompts], [k] * len(prompts), suffixes.shape[1], "cpu", backend=backend)
    steps = []
    with adapter.attached():
        first = adapter.prefill(store, prompts)
        store.begin_decode()
        base = store.prefix_lens.long()[store.prompt_of_seq]
        for s in range(suffixes.shape[1]):
            store.set_step(torch.tensor(s))
            steps.append(adapter.decode(store, suffixes[:, s], base + s).clone())
    return first, torch.stack(steps, 1)


DECODE_TIERS = ["reference"] + (["cpu"] if _backend.usable("cpu", "cpu") else [])


def reference_logits(model, seq):
    """The model's own forward as the reference, in eager attention when the model soft-caps its
    attention logits: transformers 5.17's SDPA path ignores ``softcap`` (Gemma 2), so its logits are
    not the model's (5.24 falls back by itself); eager applies every feature."""
    if not getattr(model.config, "attn_logit_softcapping", None):
        return model(seq).logits[0]
    before = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        return model(seq).logits[0]
    finally:
        model.set_attn_implementation(before)


@pytest.mark.parametrize("tier", DECODE_TIERS)
@pytest.mark.parametrize("family", FAMILIES)
def test_split_attention_logits_equal_full_forward(family, tier):
    """fp32: logits of every decode step equal a plain HF forward over prompt + that sample's tokens."""
    model = tiny_model(family, seed=3)
    g = torch.Generator().manual_seed(0)
    # one prompt longer and one shorter than the sliding windows
    prompts = [torch.randint(1, 111, (n,), generator=g).tolist() for n in (9, 3)]
    suffixes = torch.randint(1, 111, (6, 5), generator=g)  # K=3 samples per prompt, 5 steps
    first, steps = _split_logits(model, prompts, suffixes, tier)
    with torch.no_grad():
        for p, prompt in enumerate(prompts):
            for j in range(3):
                row = p * 3 + j
                seq = torch.tensor(prompt + suffixes[row].tolist())[None]
                full = reference_logits(model, seq)
                torch.testing.assert_close(first[p], full[len(prompt) - 1], atol=1e-5, rtol=1e-5)
                torch.testing.assert_close(steps[row], full[len(prompt):], atol=1e-5, rtol=1e-5)


def test_samples_independent_of_batch_and_chunking():
    model = tiny_model("llama", seed=4)
    a, b = [5, 6, 7, 8], [9, 10]
    kw = dict(max_new_tokens=7, temperature=1.0, seed=11)
    alone = fp.Sampler(model).sample([a], n=4, stream_ids=[7], **kw)
    batched = fp.Sampler(model).sample([b, a], n=4, stream_ids=[3, 7], **kw)
    chunked = fp.Sampler(model, max_rows=3).sample([b, a], n=4, stream_ids=[3, 7], **kw)
    more = fp.Sampler(model).sample([a], n=6, stream_ids=[7], **kw)
    assert batched.tokens[1] == alone.tokens[0]
    assert chunked.tokens == batched.tokens
    assert more.tokens[0][:4] == alone.tokens[0]
    other_seed = fp.Sampler(model).sample([a], n=4, stream_ids=[7], **{**kw, "seed": 12})
    assert other_seed.tokens[0] != alone.tokens[0]
    other_stream = fp.Sampler(model).sample([a], n=4, stream_ids=[8], **kw)
    assert other_stream.tokens[0] != alone.tokens[0]


def test_finish_reasons_lengths_and_padding():
    model = tiny_model("qwen2", seed=5)
    sampler = fp.Sampler(model)
    probe = sampler.sample([[3, 4, 5]], n=16, max_new_tokens=6, temperature=1.0, seed=0)
    eos = probe.tokens[0][0][2]  # a token that sample 0 draws at step 2
    batch, padded = sampler.sample_padded([[3, 4, 5]], n=16, max_new_tokens=6, temperature=1.0, seed=0,
                                          eos_token_id=eos)
    reasons = batch.finish_reasons[0]
    assert reasons[0] == "eos" and batch.tokens[0][0] == probe.tokens[0][0][:3]
    for toks, reason, length, full in zip(batch.tokens[0], reasons, batch.lengths[0], probe.tokens[0]):
        assert len(toks) == length
        assert toks == full[:length]  # EOS only truncates: the draws are the same
        if reason == "eos":
            assert toks[-1] == eos and eos not in toks[:-1]
        else:
            assert reason == "length" and length == 6 and eos not in toks
    assert batch.num_tokens == int(batch.lengths.sum())
    for j, length in enumerate(batch.lengths[0]):
        assert (padded[0, j, length:] == model.generation_config.pad_token_id).all()


def test_compaction_gives_identical_samples():
    model = tiny_model("llama", seed=6)
    prompts = [[1, 2, 3, 4], [5, 6], [7, 8, 9]]
    kw = dict(n=6, max_new_tokens=12, temperature=1.0, top_k=4, seed=3)
    probe = fp.Sampler(model).sample(prompts, **kw)
    rows = [set(t[:5]) for r in probe.tokens for t in r]
    common = sorted(range(111), key=lambda tok: -sum(tok in r for r in rows))
    kw["eos_token_id"] = common[:3]  # the three tokens most rows draw early: most rows end early
    plain = fp.Sampler(model, compact=False, continuous=False).sample(prompts, **kw)
    compacting = fp.Sampler(model, compact=True, continuous=False)
    compacted = compacting.sample(prompts, **kw)
    assert compacting.last_stats["compactions"] >= 1
    assert compacted.tokens == plain.tokens
    assert compacted.finish_reasons == plain.finish_reasons


def test_oom_splits_chunk_and_keeps_work(monkeypatch):
    model = tiny_model("llama", seed=7)
    prompts = [[1, 2, 3], [4, 5, 6, 7], [8, 9]]
    kw = dict(n=4, max_new_tokens=5, seed=5)
    want = fp.Sampler(model).sample(prompts, **kw)
    real_run = decode_loop.ChunkDecoder.run
    attempts = []

    def fake_run(self):
        rows = sum(it.count for it in self.items)
        attempts.append(rows)
        if rows > 3:
            raise torch.cuda.OutOfMemoryError("simulated")
        return real_run(self)

    monkeypatch.setattr(decode_loop.ChunkDecoder, "run", fake_run)
    sampler = fp.Sampler(model, continuous=False)
    got = sampler.sample(prompts, **kw)
    assert got.tokens == want.tokens
    assert sampler.last_stats["oom_splits"] >= 3 and max(attempts) == 12


def test_plan_chunks_covers_every_sample_once():
    model = tiny_model("llama")
    adapter = ModelAdapter(model)
    prompts = [[1] * 5, [2] * 50, [3] * 7]
    per_row = planning._row_bytes(adapter, 9)
    chunks = planning.plan_chunks(adapter, prompts, 10, [0, 1, 2], 10, budget=per_row * 7 + 4096)
    assert len(chunks) > 1
    seen = sorted((it.index, it.first_sample + j) for c in chunks for it in c for j in range(it.count))
    assert seen == [(i, j) for i in range(3) for j in range(10)]
    assert all(sum(it.count for it in c) <= 7 for c in chunks)


def test_cpu_thread_choice_is_restored_and_does_not_change_samples():
    from fastpass.engine import cpu_threads

    model = tiny_model("llama", seed=10)
    before = torch.get_num_threads()
    assert cpu_threads.pick(model, 16, cpu_threads.candidates()) in cpu_threads.candidates()
    kw = dict(n=4, max_new_tokens=40, seed=3)  # > REPROBE_EVERY steps: probes run mid-decode
    a = fp.Sampler(model).sample([[1, 2, 3]], **kw)
    assert torch.get_num_threads() == before
    torch.set_num_threads(1)
    try:
        b = fp.Sampler(model).sample([[1, 2, 3]], **kw)
    finally:
        torch.set_num_threads(before)
    assert a.tokens == b.tokens


def test_model_state_restored_after_error():
    model = tiny_model("llama")
    model.train()

    def boom(samples, tokens):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        for _ in fp.Sampler(model).stream([[1, 2]], n=2, max_new_tokens=2, on_progress=boom):
            pass
    assert model.config._attn_implementation == "sdpa" and model.training


class _StopAfter:
    """Stand-in for fastpass.regex streaming: final once any token of ``toks`` has been seen."""

    def __init__(self, toks):
        self.toks = torch.tensor(sorted(toks))

    def streamer(self, batch_size, token_bytes, device):
        toks = self.toks

        class S:
            seen = torch.zeros(batch_size, dtype=torch.bool)

            def step(self, ids):
                self.seen |= torch.isin(ids, toks)
                return self.seen.clone()

            def reset(self, rows):
                self.seen[rows] = False
        return S()


@pytest.mark.parametrize("continuous,compact", [(False, False), (False, True), (True, None)])
def test_stop_finishes_rows_and_is_reported(continuous, compact):
    model = tiny_model("llama", seed=8)
    sampler = fp.Sampler(model, compact=compact, continuous=continuous, max_rows=5 if continuous else None)
    kw = dict(n=8, max_new_tokens=12, seed=2)
    probe = sampler.sample([[4, 5, 6]], **kw)
    counts = {}
    for toks in probe.tokens[0]:
        for t in set(toks[:4]):
            counts[t] = counts.get(t, 0) + 1
    stop_toks = set(sorted(counts, key=lambda t: -counts[t])[:3])  # most rows stop within 4 steps
    sampler.tokenizer, sampler._token_bytes = object(), object()  # bypass the byte table: fake streamer
    batch = sampler.sample([[4, 5, 6]], stop=_StopAfter(stop_toks), **kw)
    for toks, full, reason in zip(batch.tokens[0], probe.tokens[0], batch.finish_reasons[0]):
        hits = [i for i, t in enumerate(full) if t in stop_toks]
        if hits:
            assert reason == "stop" and toks == full[:hits[0] + 1]
        else:
            assert reason == "length" and toks == full
    assert "stop" in batch.finish_reasons[0]
    if not continuous:
        assert (sampler.last_stats["compactions"] >= 1) == compact


def test_stop_with_fastpass_regex():
    regex = pytest.importorskip("fastpass.regex")
    if not hasattr(regex, "token_byte_table"):
        pytest.skip("fastpass.regex streaming has not landed")

    class Tok:  # byte-level toy tokenizer: id i <-> chr(i)
        eos_token_id = None

        def __len__(self):
            return 111

        def __call__(self, text):
            return {"input_ids": [ord(c) for c in text]}

        def convert_ids_to_tokens(self, ids):
            return [chr(i) for i in ids]

        def batch_decode(self, seqs, skip_special_tokens=True):
            return ["".join(chr(i) for i in s) for s in seqs]

        def get_vocab(self):
            return {chr(i): i for i in range(111)}

    model = tiny_model("llama", seed=9)
    sampler = fp.Sampler(model, Tok())
    free = sampler.sample(["ab"], n=6, max_new_tokens=10, seed=4)
    stopped = sampler.sample(["ab"], n=6, max_new_tokens=10, seed=4, stop=regex.compile("[a-z][a-z]"))
    import re
    for text, full, reason in zip(stopped.texts[0], free.texts[0], stopped.finish_reasons[0]):
        m = re.search("[a-z][a-z]", full)
        assert full.startswith(text)
        assert (reason == "stop") == (m is not None and m.end() <= 10)
        if reason == "stop":
            assert m.end() == len(text)  # stops right at the token completing the match
    assert "stop" in stopped.finish_reasons[0] and "length" in stopped.finish_reasons[0]


def test_refusals_and_errors():
    with pytest.raises(TypeError, match="causal LM"):
        fp.Sampler(torch.nn.Linear(2, 2))
    model = tiny_model("llama")
    model.config.attention_chunk_size = 8
    with pytest.raises(ValueError, match="chunked"):
        fp.Sampler(model)
    model = tiny_model("llama")
    with pytest.raises(ValueError, match="tokenizer"):
        fp.Sampler(model).sample(["text prompt"], n=2)
    with pytest.raises(ValueError, match="empty"):
        fp.Sampler(model).sample([[]], n=2)
    with pytest.raises(ValueError, match="stream_ids"):
        fp.Sampler(model).sample([[1], [2]], n=2, stream_ids=[0])
    with pytest.raises(TypeError, match="stop"):
        fp.Sampler(model).sample([[1]], n=2, stop="</answer>")
    with pytest.raises(ValueError, match="texts needs a tokenizer"):
        fp.Sampler(model).sample([[1]], n=2, max_new_tokens=2).texts
    q = torch.zeros(1, 4, 1, 16)
    with pytest.raises(RuntimeError, match="only inside fastpass"):
        _fastpass_attention(model.model.layers[0].self_attn, q, q, q, None)


TRITON_INTERP = _backend.usable("triton", "cpu")


@pytest.mark.skipif(not TRITON_INTERP, reason="needs triton with TRITON_INTERPRET=1 (set by conftest)")
@pytest.mark.parametrize("family", ["llama", "gemma2"])  # gemma2: softcap + sliding window in the kernels
def test_engine_on_triton_tier_equals_reference_tier(family):
    """The GPU path's kernels (Triton prefill, split decode, sampler) driven by the engine, here under the
    Triton interpreter: same greedy and sampled tokens as the reference tier."""
    model = tiny_model(family, seed=6)
    prompts = [[5, 6, 7, 8, 9, 10, 11], [12, 13, 14]]
    for kw in (dict(temperature=0.0), dict(temperature=1.0, top_k=20, seed=4)):
        want = fp.Sampler(model, backend="reference").sample(prompts, n=3, max_new_tokens=5, **kw)
        got = fp.Sampler(model, backend="triton").sample(prompts, n=3, max_new_tokens=5, **kw)
        assert got.tokens == want.tokens, kw
