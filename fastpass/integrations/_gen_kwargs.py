"""lm-eval generation kwargs read as lm-eval's ``hf`` model reads them, for fastpass's Sampler.

A task's generation_kwargs come first, then the model's generation config, then HF generate's
global defaults (transformers' GenerationConfig: top_k = 50, top_p = 1.0, temperature = 1.0,
repetition_penalty = 1.0). Greedy unless do_sample (or, without do_sample, a positive temperature:
lm-eval's normalize_gen_kwargs); greedy applies no sampling warpers but still the repetition
penalty, as HF does. Settings fastpass does not implement are refused unless at their neutral value."""
from __future__ import annotations

_MAX_TOKEN_KEYS = ("max_gen_toks", "max_new_tokens", "max_tokens", "max_completion_tokens")
# What HF generate uses for a setting that neither the task nor the model's generation config sets
# (transformers' GenerationConfig global defaults); fastpass applies these the same way.
HF_DEFAULTS = {"do_sample": False, "temperature": 1.0, "top_k": 50, "top_p": 1.0, "min_p": None,
               "repetition_penalty": 1.0}
# HF generation settings fastpass does not implement, with the value at which they do nothing.
UNSUPPORTED = {"num_beams": 1, "num_return_sequences": 1, "typical_p": 1.0, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0,
               "no_repeat_ngram_size": 0, "encoder_repetition_penalty": 1.0, "penalty_alpha": None,
               "min_length": 0, "min_new_tokens": None, "bad_words_ids": None, "suppress_tokens": None,
               "begin_suppress_tokens": None, "sequence_bias": None, "forced_bos_token_id": None,
               "forced_eos_token_id": None, "exponential_decay_length_penalty": None, "guidance_scale": None,
               "renormalize_logits": False}


def _neutral(value, neutral) -> bool:
    return value is None or value == neutral or (neutral is None and value in ((), [], {}))


def hf_generation_defaults(model) -> dict:
    """The settings lm-eval's ``hf`` model samples with when a task leaves them out: the model's
    generation config where it sets them, else HF generate's global defaults."""
    cfg = getattr(model, "generation_config", None)
    out = {}
    for key, default in {**HF_DEFAULTS, **UNSUPPORTED}.items():
        value = getattr(cfg, key, None) if cfg is not None else None
        out[key] = default if value is None else value
    return out


def defaults_not_applied(defaults: dict) -> list[str]:
    """``key=value`` for generation-config settings fastpass would leave out (hf applies them)."""
    return [f"{k}={defaults[k]!r}" for k, neutral in UNSUPPORTED.items() if not _neutral(defaults.get(k), neutral)]


def parse_gen_kwargs(gen_kwargs: dict, default_max_gen_toks: int, defaults: dict | None = None) -> dict:
    """lm-eval generation kwargs -> Sampler arguments + ``until``, as lm-eval's ``hf`` model reads
    them: greedy unless do_sample (or, without do_sample, a positive temperature); whatever the task
    leaves out comes from ``defaults`` (``hf_generation_defaults(model)``; HF's global defaults if
    None). One clear error on anything fastpass does not do."""
    d = {**HF_DEFAULTS, **UNSUPPORTED, **(defaults or {})}
    kw = dict(gen_kwargs or {})
    until = kw.pop("until", None)
    until = [] if until is None else [until] if isinstance(until, str) else list(until)
    max_new = next((kw.pop(k) for k in _MAX_TOKEN_KEYS if kw.get(k) is not None), default_max_gen_toks)
    for k in _MAX_TOKEN_KEYS:
        kw.pop(k, None)
    do_sample = kw.pop("do_sample", None)
    temperature = kw.pop("temperature", None)
    if do_sample is None:  # lm-eval's normalize_gen_kwargs: a positive temperature samples
        do_sample = temperature is not None and float(temperature) > 0
    picked = {}
    for key in ("top_k", "top_p", "min_p", "repetition_penalty"):
        value = kw.pop(key, None)
        picked[key] = d[key] if value is None else value
    if do_sample:
        temperature = float(d["temperature"] if temperature is None else temperature)
        if temperature <= 0:
            raise ValueError(f"do_sample=True with temperature={temperature}: HF sampling (and lm-eval's hf model) "
                             "needs temperature > 0; set a positive temperature, or do_sample: false for greedy")
        sampling = {"temperature": temperature, "top_k": int(picked["top_k"] or 0),
                    "top_p": float(1.0 if picked["top_p"] is None else picked["top_p"]),
                    "min_p": float(picked["min_p"] or 0.0)}
    else:  # greedy: HF applies no sampling warpers, but still the repetition penalty
        sampling = {"temperature": 0.0, "top_k": 0, "top_p": 1.0, "min_p": 0.0}
    out = {"until": until, "max_new_tokens": int(max_new), **sampling,
           "repetition_penalty": float(picked["repetition_penalty"])}
    for key, neutral in UNSUPPORTED.items():
        if key in kw and not _neutral(kw.pop(key), neutral):
            raise ValueError(f"generation kwarg {key}={gen_kwargs[key]!r} is not supported by fastpass: drop it "
                             f"from the task's generation_kwargs or set it to {neutral}")
    if kw:
        name = next(iter(kw))
        raise ValueError(f"generation kwarg {name!r} is not supported by fastpass (supported: until, do_sample, "
                         "temperature, top_k, top_p, min_p, repetition_penalty, max_gen_toks): drop it from the "
                         "task's generation_kwargs")
    return out
