"""P7 (SPEC §6): a real, long-tailed screening job on CPU, fastpass vs vLLM-CPU vs HF ``generate``.

The ``gsm8k`` preset's prompts for the first 32 problems of ../shared/data/gsm8k_test.jsonl, built
exactly as ``fp.screen`` builds them (the preset's template through the model's chat template),
SmolLM2-135M-Instruct, n = 16, max_new_tokens 256, EOS on, temperature 1.0, top_k 0, top_p 1 on
every side. Each side reports generated tokens per second over the whole job and its wall time,
and the mean and spread of its sample lengths; two-sample Kolmogorov-Smirnov and Mann-Whitney tests
check that fastpass's lengths come from the same distribution as each baseline's (they should,
when the sampling is right). Lengths count every generated token up to and including the EOS.

HF runs one ``generate`` per problem with the prompt copied K times (``num_return_sequences``),
``do_sample``, and explicit ``top_k=0``, ``top_p=1.0`` so the model's generation-config defaults
cannot change the distribution; a call lasts until its longest sample ends."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k_test.jsonl"
FULL = dict(problems=32, n=16, max_new_tokens=256)
QUICK = dict(problems=2, n=16, max_new_tokens=64)


@dataclass
class Side:
    """One side of the comparison: wall seconds of the whole job and the per-sample lengths [P, n]."""
    name: str
    wall_s: float | None
    lengths: np.ndarray | None
    note: str = ""
    max_new_tokens: int | None = None  # the cap: a sample shorter than it ended on EOS

    @property
    def tokens(self) -> int:
        return 0 if self.lengths is None else int(self.lengths.sum())

    @property
    def tokens_per_s(self) -> float | None:
        return None if self.wall_s is None or self.lengths is None else self.tokens / self.wall_s


def gsm8k_prompts(tokenizer, problems: int, data: Path = DATA) -> list[list[int]]:
    """The token ids ``fp.screen(..., preset="gsm8k")`` would sample from for the first problems."""
    from fastpass.screen.pipeline import build_prompt_ids, prepare
    from fastpass.screen.presets import question_text

    if not Path(data).exists():
        raise FileNotFoundError(f"P7 needs {data} (the shared GSM8K test set): run it from the project "
                                "checkout that has ../shared/data")
    preset, _rule, probs = prepare(str(data), "gsm8k", limit=problems)
    return [build_prompt_ids(tokenizer, preset.template, question_text(preset, p.question), True) for p in probs]


def lengths_until_eos(generated: torch.Tensor, eos_ids) -> np.ndarray:
    """Per-row generated tokens up to and including the first EOS (all of them when none)."""
    gen = generated.cpu()
    is_eos = torch.isin(gen, torch.tensor(list(eos_ids), dtype=gen.dtype))
    first = torch.where(is_eos.any(1), is_eos.int().argmax(1) + 1, torch.full((gen.shape[0],), gen.shape[1]))
    return first.numpy().astype(np.int64)


def run_fastpass(model, tokenizer, prompts, n, max_new_tokens, eos_ids, seed=0, **sampler_kw) -> Side:
    import fastpass as fp

    sampler = fp.Sampler(model, tokenizer, **sampler_kw)
    sampler.sample(prompts[:1], n=2, max_new_tokens=4, eos_token_id=list(eos_ids))  # warm-up
    t0 = time.perf_counter()
    batch = sampler.sample(prompts, n=n, max_new_tokens=max_new_tokens, temperature=1.0, top_k=0, top_p=1.0,
                           seed=seed, eos_token_id=list(eos_ids))
    wall = time.perf_counter() - t0
    return Side("fastpass", wall, batch.lengths.copy(),
                f"Sampler.sample, one call for all prompts; decode threads {sampler.last_stats.get('threads')}",
                max_new_tokens)


def run_hf(model, prompts, n, max_new_tokens, eos_ids, pad_id) -> Side:
    lengths = []
    model.generate(torch.tensor([prompts[0][:8]]), do_sample=True, max_new_tokens=2, top_k=0, top_p=1.0,
                   pad_token_id=pad_id)  # warm-up
    t0 = time.perf_counter()
    for p in prompts:  # one problem at a time: all 16 copies of the prompt in one batch
        ids = torch.tensor([p])
        out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, num_return_sequences=n,
                             max_new_tokens=max_new_tokens, temperature=1.0, top_k=0, top_p=1.0,
                             eos_token_id=list(eos_ids), pad_token_id=pad_id)
        lengths.append(lengths_until_eos(out[:, ids.shape[1]:], eos_ids))
    wall = time.perf_counter() - t0
    return Side("HF generate", wall, np.stack(lengths), "one generate(num_return_sequences=K) per problem",
                max_new_tokens)


def run_vllm(folder, prompts, n, max_new_tokens, eos_ids) -> Side:
    from bench import vllm_baseline

    r = vllm_baseline.generate(folder, prompts, n, max_new_tokens, temperature=1.0, top_k=0, top_p=1.0,
                               eos_ids=list(eos_ids))
    return Side("vLLM-CPU" if not folder.on_gpu else "vLLM", r.wall_s, r.lengths, r.note, max_new_tokens)


def compare_lengths(a: np.ndarray, b: np.ndarray) -> dict:
    """Two-sample tests that two sets of sample lengths come from one distribution."""
    from scipy import stats

    a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
    ks = stats.ks_2samp(a, b)
    mw = stats.mannwhitneyu(a, b, alternative="two-sided")
    return {"ks_stat": float(ks.statistic), "ks_p": float(ks.pvalue), "mw_p": float(mw.pvalue)}


def describe(side: Side) -> str:
    if side.lengths is None:
        return f"{side.name}: {side.note}"
    lens = side.lengths.ravel()
    return (f"{side.name} {side.tokens} tokens in {side.wall_s:.1f} s, length mean {lens.mean():.1f} "
            f"sd {lens.std(ddof=1) if lens.size > 1 else 0.0:.1f}"
            + ("" if side.max_new_tokens is None else
               f", ended by EOS before the cap {100 * (lens < side.max_new_tokens).mean():.0f}%"))


def rows_for(case: str, fast: Side, baselines: list[Side], load_note: str, roofline: tuple | None = None) -> list[dict]:
    """One row per baseline: tokens/s of both, the ratio, the two length tests in the note;
    ``roofline`` (tokens/s, how it was measured) adds fastpass's fraction of it."""
    rows = []
    for base in baselines:
        note = [load_note, describe(fast), describe(base)]
        if roofline is not None:
            note.insert(1, f"roofline {roofline[0]:.0f} tok/s for these lengths ({roofline[1]})")
        if fast.lengths is not None and base.lengths is not None:
            t = compare_lengths(fast.lengths, base.lengths)
            note.append(f"lengths vs {base.name}: KS D={t['ks_stat']:.3f} p={t['ks_p']:.3f}, "
                        f"Mann-Whitney p={t['mw_p']:.3f}")
        b = base.tokens_per_s
        rows.append(dict(bench="e2e", case=case, fastpass=fast.tokens_per_s, baseline_name=base.name, baseline=b,
                         unit="tok/s", ratio=fast.tokens_per_s / b if b and fast.tokens_per_s else None,
                         roofline_frac=(fast.tokens_per_s / roofline[0]
                                        if roofline is not None and fast.tokens_per_s else None),
                         note="; ".join(note)))
    return rows
