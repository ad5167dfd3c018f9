"""Batch invariance of the CPU engine: every logit a sample is drawn from has the same bits whatever
else is decoded with it (how many rows, which prompts, in which order, prefilled together or not,
on one thread or two). Without it a resumed screen draws other samples than an uninterrupted one,
and results depend on --max-rows."""
import pytest
import torch

import fastpass as fp
from fastpass import _backend
from fastpass.engine import packed_linear, scheduler
from fastpass.engine.tiny_models import tiny_model

pytestmark = pytest.mark.skipif(not (packed_linear.available() and _backend.usable("cpu", "cpu")),
                                reason="needs torch with oneDNN and the C++ extension")


def _prompts(count, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(1, 111, (int(n),), generator=g).tolist()
            for n in torch.randint(2, 30, (count,), generator=g)]


def _logits(monkeypatch, model, prompts, first, rows, threads, n=6, pack=None):
    """{(problem, sample, step): logits row} of every draw of a job over prompts[first:]."""
    seen = {}
    draw = scheduler.ContinuousDecoder._sample

    def recording(self, logits, rows_, steps):
        keys = zip(self.stream_ids.index_select(0, rows_).tolist(), self.sample_ids.index_select(0, rows_).tolist(),
                   steps.tolist())
        for i, key in enumerate(keys):
            assert key not in seen, f"draw {key} made twice"
            seen[key] = logits[i].clone()
        return draw(self, logits, rows_, steps)

    monkeypatch.setattr(scheduler.ContinuousDecoder, "_sample", recording)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        sampler = fp.Sampler(model, max_rows=rows, pack_weights=pack)
        batch = sampler.sample(prompts[first:], n=n, max_new_tokens=12, temperature=1.0, seed=3,
                               stream_ids=list(range(first, len(prompts))), eos_token_id=[5, 7, 9])
    finally:
        torch.set_num_threads(before)
        monkeypatch.undo()
    lengths = batch.lengths.ravel()
    assert lengths.min() < 12 == lengths.max()  # long-tailed: rows are refilled at odd batch sizes
    return seen


def _differing(want, got):
    return [k for k in got if not torch.equal(got[k], want[k])]


@pytest.mark.parametrize("family", ["llama", "gemma2", "qwen3", "phi3"])  # softcap, windows, qk-norm
def test_logits_do_not_depend_on_what_shares_the_batch(monkeypatch, family):
    model = tiny_model(family, seed=1)
    prompts = _prompts(10)
    want = _logits(monkeypatch, model, prompts, 0, rows=64, threads=1)
    cases = [(0, 1, 1), (0, 3, 2), (0, 7, 1), (0, 13, 2), (0, 128, 2), (4, 64, 1), (3, 5, 2)]
    for first, rows, threads in cases:  # first > 0: the job a resume after `first` problems runs
        got = _logits(monkeypatch, model, prompts, first, rows, threads)
        expected = {k for k in want if k[0] >= first}
        assert set(got) == expected, f"rows={rows}: other draws (different tokens) than with 64 rows"
        bad = _differing(want, got)
        assert not bad, f"rows={rows} threads={threads} first={first}: {len(bad)} of {len(got)} logits rows differ"


def test_torch_kernels_are_not_batch_invariant_so_packing_is_on(monkeypatch):
    """The check above can fail: with torch's own GEMMs (pack_weights=False) logits of one draw differ
    between batch sizes (a few rows take other kernels), and the default packs even tiny models."""
    model = tiny_model("llama", seed=1)
    prompts = _prompts(10)
    want = _logits(monkeypatch, model, prompts, 0, rows=64, threads=1, pack=False)
    got = _logits(monkeypatch, model, prompts, 0, rows=1, threads=1, pack=False)
    assert _differing(want, {k: v for k, v in got.items() if k in want})
    monkeypatch.delenv("FASTPASS_PACK_WEIGHTS", raising=False)
    assert fp.Sampler(model)._packed is not None
