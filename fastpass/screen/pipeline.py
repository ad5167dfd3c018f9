"""``fp.screen``: problems -> prompts -> n samples each (shared-prefix sampler, early stop on the
answer) -> grades -> counts -> ScreenReport. Finished problems go to samples.jsonl as they finish.

Sample j of problem i draws from the key (seed, stream id = i's index in the file, j, step), so
the counts do not depend on batching, sharding or resuming."""
from __future__ import annotations

import functools
import hashlib
import inspect
import json
import math
import os
import platform
import time
from dataclasses import replace

import numpy as np

from fastpass.screen.default_set import DEFAULT_PRESET, default_problems
from fastpass.screen.distributed import Shard, gather_results, hold_out_dir, merge_samples, previous_rows
from fastpass.screen.errors import ScreenError
from fastpass.screen.grading import AnswerRule
from fastpass.screen.presets import Preset, Template, get_preset, guess_preset, question_text
from fastpass.screen.problems import Problem, ProblemFile, load_problems, read_problem_file
from fastpass.screen.report import ScreenReport
from fastpass.fate import check_reach
from fastpass.verdict import gamma_value
from fastpass.screen.store import SampleStore, check_resumed, problem_hash

DEFAULT_KS = (1, 4, 16, 64, 128)


def check_settings(n_samples, ks, temperature, top_p, top_k, min_p, max_new_tokens, *, seed=0, gamma=0.7,
                   K_train=64, min_lift=0.05, cost_per_pp_usd=250_000):
    """Validates the run's numbers before anything is loaded (the CLI calls it before the model
    loads, fp.screen before any sampling); returns the ks to report."""
    for name, v in (("n_samples", n_samples), ("max_new_tokens", max_new_tokens), ("top_k", top_k),
                    ("seed", seed), ("K_train", K_train)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ScreenError(f"{name} must be an integer, got {v!r}")
    if not 0 <= seed < 2**64:
        raise ScreenError(f"seed must lie in [0, 2**64), got {seed}: pass --seed 0 (or any seed in range)")
    if K_train < 1:
        raise ScreenError(f"K_train must be >= 1 (the RL run's samples per prompt), got {K_train}: pass --k-train 64")
    g = gamma_value(gamma)
    if not 0 <= g <= 1:
        raise ScreenError(f"gamma must lie in [0, 1] (the share of the gap RL closes), got {g}: pass --gamma 0.7")
    for name, v in (("min_lift", min_lift), ("cost_per_pp_usd", cost_per_pp_usd)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not math.isfinite(v) or v < 0:
            raise ScreenError(f"{name} must be a finite number >= 0, got {v!r}")
    for name, v in (("temperature", temperature), ("top_p", top_p), ("min_p", min_p)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.number)):
            raise ScreenError(f"{name} must be a number, got {v!r}")
    if math.isinf(temperature):
        raise ScreenError("temperature must be finite (0 = greedy, 1 = the model's distribution), got inf: "
                          "pass --temperature 1.0")
    if n_samples < 1:
        raise ScreenError(f"n must be >= 1, got {n_samples}: sample at least one completion per problem")
    if max_new_tokens < 1:
        raise ScreenError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if not temperature >= 0:
        raise ScreenError(f"temperature must be >= 0 (0 = greedy), got {temperature}: pass --temperature 1.0")
    if not 0 < top_p <= 1:
        raise ScreenError(f"top_p must lie in (0, 1], got {top_p}: pass --top-p 1.0 to turn it off")
    if top_k < 0:
        raise ScreenError(f"top_k must be >= 0 (0 = off), got {top_k}")
    if not 0 <= min_p <= 1:
        raise ScreenError(f"min_p must lie in [0, 1], got {min_p}")
    if ks is DEFAULT_KS or ks is None:
        out = sorted({k for k in DEFAULT_KS if k <= n_samples} | {1, int(n_samples)})
    else:
        try:
            out = sorted({int(k) for k in ks})
        except (TypeError, ValueError):
            raise ScreenError(f"ks must be positive integers, got {ks!r}") from None
        if not out or out[0] < 1:
            raise ScreenError(f"ks must be positive integers, got {list(ks)}")
        if out[-1] > n_samples:
            raise ScreenError(f"k = {out[-1]} exceeds n = {n_samples}: pass@k needs k <= n; lower --k or "
                              "raise -n")
        if 1 not in out:
            out = [1] + out  # the verdict needs pass@1
    return out


def _resolve_preset(preset, problems) -> Preset:
    if isinstance(preset, Preset):
        return preset
    if preset is not None:
        return get_preset(preset)
    if problems is None:
        return DEFAULT_PRESET
    if isinstance(problems, (list, tuple)) and problems and isinstance(problems[0], dict):
        return get_preset(guess_preset(problems[0]))
    if isinstance(problems, ProblemFile):
        return get_preset(guess_preset(problems.rows[0][1]))
    return get_preset("r1")  # a list of Problem objects (anything else is refused by load_problems)


def _template(template, preset: Preset) -> Template:
    if template is None:
        return preset.template
    if isinstance(template, Template):
        return template
    if isinstance(template, str):
        if "{question}" not in template:
            raise ScreenError("template must contain the placeholder {question}")
        return Template(user=template, plain=template)
    raise ScreenError(f"template must be a str with {{question}} or a Template, got {type(template).__name__}")


def build_prompt_ids(tokenizer, template: Template, question: str, chat: bool) -> list[int]:
    if chat and getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(template.messages(question), tokenize=False,
                                             add_generation_prompt=True)
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return list(tokenizer(template.plain_text(question))["input_ids"])


def _data_name(problems) -> str:
    if problems is None:
        return "embedded default set"
    if isinstance(problems, ProblemFile):
        return problems.name
    return os.fspath(problems) if isinstance(problems, (str, os.PathLike)) else "in-memory problems"


def _eos_ids(model, tokenizer) -> list[int]:
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = getattr(tokenizer, "eos_token_id", None)
    return [] if eos is None else [int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])]


def _fingerprint(cfg: dict) -> str:
    keys = ("model", "preset", "template", "chat_template", "rule", "n", "seed", "temperature", "top_k",
            "top_p", "min_p", "max_new_tokens")
    blob = json.dumps({k: cfg.get(k) for k in keys}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _versions() -> dict:
    import torch

    import fastpass

    out = {"fastpass": fastpass.__version__, "torch": torch.__version__, "python": platform.python_version()}
    for mod in ("transformers", "triton"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:
            out[mod] = None
    return out


def _device_name(model) -> str:
    import torch

    dev = next(model.parameters()).device
    if dev.type == "cuda":
        return f"{dev} ({torch.cuda.get_device_name(dev)})"
    threads = torch.get_num_threads()
    return f"cpu ({platform.machine()}, {threads} thread{'s' if threads > 1 else ''})"


def prepare(problems=None, preset=None, pattern=None, flags=None, normalize=None, occurrence=None,
            question_field=None, answer_field=None, limit=None):
    """(preset, answer rule, problems): everything about the data and the rule, checked before a
    model is loaded, so a bad file or pattern fails in a second."""
    if isinstance(problems, (str, os.PathLike)):
        problems = read_problem_file(problems)  # once: standard input cannot be read twice
    chosen = _resolve_preset(preset, problems)
    if pattern is not None and not isinstance(pattern, str):  # a GradePreset such as fp.R1_ANSWER
        chosen, pattern = replace(chosen, rule=pattern), None
    rule = AnswerRule(chosen.rule, pattern, flags, normalize, occurrence)
    probs = load_problems(default_problems() if problems is None else problems, chosen, question_field,
                          answer_field, limit)
    return chosen, rule, probs


def _holding_out_dir(fn):
    """Runs ``fn`` with the --out folder locked for this process (and rank) from before anything
    is read there until the report is written; released on return or on any exception."""
    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        bound = sig.bind(*args, **kwargs)
        out_dir, shard = bound.arguments.get("out_dir"), bound.arguments.get("shard")
        if out_dir is None:
            return fn(*args, **kwargs)
        with hold_out_dir(str(out_dir), shard or Shard()):
            return fn(*args, **kwargs)

    return wrapper


@_holding_out_dir
def screen(model=None, tokenizer=None, problems=None, n_samples: int = 128, ks=DEFAULT_KS, pattern=None,
           template=None, max_new_tokens: int = 512, seed: int = 0, out_dir=None, resume: bool = True,
           progress: bool = True, *, preset=None, flags: int | None = None, normalize: str | None = None,
           occurrence: str | None = None, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
           min_p: float = 0.0, chat_template: bool = True, save_completions: bool = False,
           question_field: str | None = None, answer_field: str | None = None, limit: int | None = None,
           gamma: float = 0.7, K_train: int = 64, min_lift: float = 0.05, cost_per_pp_usd: float = 250_000,
           ci: str | None = "bootstrap", reach=(0.05, 0.40), model_name: str | None = None, sampler=None,
           max_rows: int | None = None, shard: Shard | None = None) -> ScreenReport | None:
    """Screen ``model`` on ``problems`` (JSONL path, list of dicts, or None for the embedded default
    set): n samples per problem, graded by ``pattern`` (default: the preset's), reported as a
    pass@k curve, gaps, predicted post-RL curve and GO/SKIP verdict. ``model=None`` loads the
    embedded SmolLM2-135M-Instruct. With ``out_dir``, writes samples.jsonl (resumable),
    report.json, report.md and passk.png. ``shard`` (from ``distributed.init``, under torchrun)
    samples only this rank's problems; rank 0 returns the merged report, other ranks None."""
    report_ks = check_settings(n_samples, ks, temperature, top_p, top_k, min_p, max_new_tokens, seed=seed,
                               gamma=gamma, K_train=K_train, min_lift=min_lift, cost_per_pp_usd=cost_per_pp_usd)
    reach = check_reach(reach)  # the fate table's band, checked before hours of sampling
    chosen, rule, probs = prepare(problems, preset, pattern, flags, normalize, occurrence, question_field,
                                  answer_field, limit)
    tpl = _template(template, chosen)
    if model is None:
        from fastpass.screen.loading import load_model

        model, tokenizer, loaded_name = load_model()
        model_name = model_name or loaded_name
    if tokenizer is None:
        raise ScreenError("screen needs the model's tokenizer: pass tokenizer=")
    if not model_name:
        from fastpass.screen.loading import model_name as _loaded_name

        model_name = _loaded_name(model)
    eos_ids = _eos_ids(model, tokenizer)
    if not eos_ids:
        raise ScreenError("the model and tokenizer define no EOS token, so samples could not end: set "
                          "tokenizer.eos_token or model.generation_config.eos_token_id")
    prompts = [build_prompt_ids(tokenizer, tpl, question_text(chosen, p.question), chat_template) for p in probs]
    limit_pos = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if limit_pos is not None:
        for p, ids in zip(probs, prompts):
            if len(ids) + max_new_tokens > limit_pos:
                raise ScreenError(f"problem {p.id!r}: prompt of {len(ids)} tokens + max_new_tokens = {max_new_tokens} "
                                  f"exceeds the model's context ({limit_pos}): lower --max-new-tokens or drop "
                                  "the problem")
    if sampler is None:
        from fastpass.engine import Sampler

        sampler = Sampler(model, tokenizer, max_rows=max_rows)
    device = _device_name(model)
    model_device = next(model.parameters()).device
    cfg = {"model": model_name, "preset": chosen.name, "template": tpl.to_dict(),
           "chat_template": bool(chat_template and getattr(tokenizer, "chat_template", None)),
           "rule": rule.describe(), "n": int(n_samples), "ks": report_ks, "seed": int(seed),
           "temperature": float(temperature), "top_k": int(top_k), "top_p": float(top_p), "min_p": float(min_p),
           "max_new_tokens": int(max_new_tokens), "gamma": gamma_value(gamma), "K_train": K_train, "min_lift": min_lift,
           "gamma_calibration": gamma.summary() if hasattr(gamma, "summary") else None,  # fp.load_calibration
           "cost_per_pp_usd": cost_per_pp_usd, "device": device, "versions": _versions(),
           "data": _data_name(problems), "problems": len(probs)}
    shard = shard or Shard()
    if shard.distributed and out_dir is None:
        raise ScreenError("data-parallel screening needs out_dir (--out): the ranks exchange samples through it")
    if shard.distributed:
        cfg.update(device=f"{shard.world_size} ranks; rank 0: {device}", ranks=shard.world_size)
    fingerprint = _fingerprint(cfg)
    hashes = [problem_hash(p, ids) for p, ids in zip(probs, prompts)]
    store = SampleStore(str(out_dir), fingerprint, resume, shard.samples_file,
                        {p.index: h for p, h in zip(probs, hashes)}) if out_dir is not None else None
    done = {}
    if store is not None:  # other ranks' files, or those of an earlier run with another world size
        done = previous_rows(str(out_dir), fingerprint, store.path, resume)
        done.update(store.done)
    check_resumed(done, probs, hashes)  # a changed problem is refused, never given old counts
    shard.post("ready")
    shard.wait("ready")  # nobody writes before every rank has checked the folder
    mine = [i for i, p in enumerate(probs) if shard.owns(p.index)]
    todo = [i for i in mine if probs[i].index not in done]
    stats = {"tokens": 0, "samples": 0, "seconds": 0.0, "problems_sampled": 0,
             "problems_resumed": len(mine) - len(todo), "oom_retries": 0}
    bar = _progress(len(mine) * n_samples, (len(mine) - len(todo)) * n_samples, shard.label) if progress else None
    t0 = time.perf_counter()

    def on_progress(samples, tokens):  # as samples finish: the bar moves (and has an ETA) from the start
        shard.heartbeat()
        if bar is not None:
            bar.update(samples - (bar.n - bar.initial))
            secs = max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix_str(f"{stats['problems_sampled']}/{len(todo)} problems, {tokens / secs:.0f} tok/s")

    try:
        # every problem streams through one continuous scheduler: its row is written (and can be
        # resumed) as soon as its n samples are graded
        stream = sampler.stream([prompts[i] for i in todo], n=n_samples, max_new_tokens=max_new_tokens,
                                temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, seed=seed,
                                stream_ids=[probs[i].index for i in todo], stop=rule.stop,
                                on_progress=on_progress) if todo else ()
        for k, batch in stream:
            row = _graded_row(batch, probs[todo[k]], rule, sampler.tokenizer, eos_ids, model_device,
                              save_completions)
            if store is not None:
                store.append(row)
            done[row["index"]] = row
            stats["tokens"] += batch.num_tokens
            stats["samples"] += n_samples
            stats["problems_sampled"] += 1
    finally:
        stats["seconds"] = time.perf_counter() - t0
        stats["oom_retries"] = int(sampler.last_stats.get("oom_splits") or 0) if todo else 0
        if bar is not None:
            bar.close()
        if store is not None:
            store.close()
    if shard.distributed:
        merged = gather_results(shard, out_dir, fingerprint, stats, [p.index for p in probs])
        if merged is None:
            return None
        done, stats = merged
    elif store is not None and len(done) > len(store.done):  # a data-parallel run's leftovers: fold them in
        merge_samples(str(out_dir), fingerprint)
    secs = stats["seconds"]
    stats.update(tokens_per_s=stats["tokens"] / secs if secs else 0.0,
                 samples_per_s=stats["samples"] / secs if secs else 0.0)
    rows = [done[p.index] for p in probs]
    rep = ScreenReport.from_counts([r["id"] for r in rows], [r["n"] for r in rows], [r["c"] for r in rows],
                                   ks=report_ks, gamma=gamma, K_train=K_train, min_lift=min_lift,
                                   cost_per_pp_usd=cost_per_pp_usd, ci=ci, config=cfg, throughput=stats,
                                   reach=reach)
    if out_dir is not None:
        rep.save(str(out_dir))
    shard.post("reported")
    return rep


def _graded_row(batch, p: Problem, rule: AnswerRule, tokenizer, eos_ids, device, save_completions) -> dict:
    """The samples.jsonl row of one problem: its n samples graded."""
    n = len(batch.tokens[0])
    ok = rule.grade_tokens(batch.tokens[0], [p.gold] * n, tokenizer, eos_ids, device)
    row = {"index": p.index, "id": p.id, "n": n, "c": int(sum(ok)), "correct": [int(x) for x in ok],
           "lengths": [int(x) for x in batch.lengths[0]], "finish_reasons": list(batch.finish_reasons[0])}
    if save_completions:
        row["completions"] = list(batch.texts[0])
    return row


def _progress(total: int, initial: int, desc: str = "screen"):
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, desc=desc, unit="sample", dynamic_ncols=True)
