"""lm-eval adapter: ``FastpassLM``, registered in lm-eval's model registry as ``fastpass``.

    python -m fastpass.integrations.lm_eval --model fastpass --model_args pretrained=DIR --tasks T
    fastpass-lm-eval --model fastpass ...          # same, as a console script

lm-eval only knows models registered when its CLI starts, so both commands import this module
(which registers ``fastpass``) and then hand the argument list to lm-eval's own CLI. From Python,
``import fastpass.integrations.lm_eval`` before ``lm_eval.simple_evaluate(model="fastpass", ...)``.

``generate_until``: requests with the same context and generation kwargs (tasks with
``repeats``) become ONE prompt with n = the number of repeats in ``fp.Sampler``, so the prompt
is prefilled once and its KV is shared by every sample. A sample is keyed by (seed, a hash of
context + kwargs, repeat index): results do not depend on what else is in the batch. Stop
strings end sampling early through a fastpass regex when that compiles; either way the text is
cut at the first stop string, as HFLM does.
``loglikelihood`` / ``loglikelihood_rolling``: the model's forward, batched (see ``_scoring``).

Behaves as lm-eval's own ``hf`` model: ``add_bos_token`` reaches the tokenizer and every encoding;
rolling loglikelihood encodes with the tokenizer's default special tokens; settings a task leaves
out come from the model's generation config and then HF generate's defaults (top_k = 50 unless the
config says otherwise), including ``repetition_penalty`` (HF's, over prompt and generated tokens);
without ``seed=`` in model_args the seed is torch's (``lm_eval --seed``'s torch part). Greedy
outputs equal ``hf``'s; sampled outputs are draws from the same distribution, keyed by the seed
rather than by torch's global random state. Generation settings fastpass does not implement (beam
search, typical_p, ...) are refused when a task asks for them and named at start-up when the model's
generation config sets them."""
from __future__ import annotations

import hashlib
import inspect
import json
import logging
import re
import sys

import torch
from lm_eval.api.model import TemplateLM
from tqdm import tqdm

from fastpass.integrations._gen_kwargs import (HF_DEFAULTS, UNSUPPORTED, defaults_not_applied,  # noqa: F401
                                               hf_generation_defaults, parse_gen_kwargs)
from fastpass.integrations._scoring import score_continuations

log = logging.getLogger(__name__)

MODEL_NAME = "fastpass"


def stream_id(context: str, kwargs_key: str) -> int:
    """A stable 31-bit id per (context, kwargs): the random stream of that prompt's samples."""
    digest = hashlib.sha256(f"{kwargs_key}\0{context}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def _kwargs_key(gen_kwargs) -> str:
    return json.dumps(gen_kwargs, sort_keys=True, default=str)


def _load(pretrained, tokenizer, gguf_file, dtype, device, trust_remote_code, revision, add_bos_token=None):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    extra = {"trust_remote_code": trust_remote_code}
    if revision:
        extra["revision"] = revision
    if gguf_file:
        extra["gguf_file"] = gguf_file
    if isinstance(pretrained, str):
        model = AutoModelForCausalLM.from_pretrained(pretrained, dtype=_dtype(dtype), **extra)
    else:
        model = pretrained
    if tokenizer is None:
        if not isinstance(pretrained, str):
            raise ValueError("pass tokenizer=... (a tokenizer or its directory) with a model object")
        tokenizer = pretrained
    if isinstance(tokenizer, str):
        # as lm-eval's hf model: add_bos_token goes to the tokenizer itself (its post-processor adds BOS)
        bos = {} if add_bos_token is None else {"add_bos_token": add_bos_token}
        tokenizer = AutoTokenizer.from_pretrained(tokenizer, **extra, **bos)
    if device is not None:
        model = model.to(device)
    return model.eval(), tokenizer


def _dtype(dtype):
    if dtype in (None, "auto") or isinstance(dtype, torch.dtype):
        return dtype or "auto"
    name = str(dtype).replace("torch.", "")
    if not isinstance(getattr(torch, name, None), torch.dtype):
        raise ValueError(f"dtype={dtype!r} is not a torch dtype: use auto, bfloat16, float16 or float32")
    return getattr(torch, name)


class FastpassLM(TemplateLM):
    """lm-eval model backed by a Hugging Face causal LM and fastpass's shared-prefix sampler.

    model_args: ``pretrained`` (directory, hub id, or a loaded model object), ``tokenizer``,
    ``gguf_file``, ``dtype`` (auto), ``device`` (cuda when available), ``batch_size`` (rows per
    log-likelihood forward), ``max_batch_tokens``, ``max_length``, ``seed`` (default: torch's seed
    when sampling starts, which ``lm_eval --seed`` sets), ``backend`` (fastpass tier, default: chosen
    per device), ``add_bos_token`` (as hf's: passed to the tokenizer and to every encoding),
    ``stop_regex`` (True: end samples early at a stop string), ``max_gen_toks`` (256)."""

    def __init__(self, pretrained=None, tokenizer=None, gguf_file=None, dtype="auto", device=None,
                 batch_size=32, max_batch_size=None, max_batch_tokens=None, max_length=None, seed=None,
                 backend=None, add_bos_token=None, stop_regex=True, max_gen_toks=256,
                 trust_remote_code=False, revision=None, **unused):
        super().__init__()
        if pretrained is None:
            raise ValueError("FastpassLM needs pretrained=DIR_OR_ID (e.g. --model_args pretrained=/path/to/model)")
        if unused:
            log.warning("FastpassLM ignores model_args %s", sorted(unused))
        if device is not None and str(device).startswith("cuda") and not torch.cuda.is_available():
            # lm-eval's CLI defaults --device to cuda:0, also on machines without a GPU
            log.warning("device=%s requested but CUDA is not available: running on cpu", device)
            device = "cpu"
        elif device is None and isinstance(pretrained, str):
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.add_bos_token = None if add_bos_token is None else _as_bool(add_bos_token)
        self._model, self.tokenizer = _load(pretrained, tokenizer, gguf_file, dtype, device,
                                            _as_bool(trust_remote_code), revision, self.add_bos_token)
        self._device = next(self._model.parameters()).device
        self.batch_size = _as_batch_size(batch_size, max_batch_size)
        on_gpu = self._device.type == "cuda"
        self.max_batch_tokens = int(max_batch_tokens or (32768 if on_gpu else 4096))
        self._max_length = int(max_length) if max_length else None
        self.seed = None if seed is None else int(seed)
        self.stop_regex = _as_bool(stop_regex)
        self._max_gen_toks = int(max_gen_toks)
        from fastpass.engine import Sampler

        self.sampler = Sampler(self._model, self.tokenizer, backend=backend)
        self._stop_cache: dict[tuple[str, ...], object] = {}
        # what hf samples with when a task leaves a setting out, and what of it fastpass cannot do
        self.generation_defaults = hf_generation_defaults(self._model)
        self._takes_penalty = "repetition_penalty" in inspect.signature(self.sampler.sample).parameters
        missing = defaults_not_applied(self.generation_defaults)
        if not self._takes_penalty and self.generation_defaults["repetition_penalty"] != 1.0:
            missing.append(f"repetition_penalty={self.generation_defaults['repetition_penalty']!r}")
        if missing:
            log.warning("FastpassLM differs from lm-eval's hf model here: the model's generation config sets %s, "
                        "which fastpass does not apply", ", ".join(missing))

    # ---- properties lm-eval reads ---------------------------------------------------------------
    @property
    def model(self):
        return self._model

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def prefix_token_id(self) -> int:
        bos = self.tokenizer.bos_token_id
        return bos if bos is not None else self.tokenizer.eos_token_id

    @property
    def max_length(self) -> int:
        if self._max_length:
            return self._max_length
        cfg = self._model.config
        cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
        for attr in ("max_position_embeddings", "n_positions", "seq_length"):
            if getattr(cfg, attr, None):
                return int(getattr(cfg, attr))
        tok_max = getattr(self.tokenizer, "model_max_length", None)
        return int(tok_max) if tok_max and tok_max < 10**7 else 2048

    @property
    def max_gen_toks(self) -> int:
        return self._max_gen_toks

    @property
    def tokenizer_name(self) -> str:
        return self.tokenizer.name_or_path.replace("/", "__")

    def apply_chat_template(self, chat_history, add_generation_prompt: bool = True) -> str:
        return self.tokenizer.apply_chat_template(chat_history, tokenize=False,
                                                  add_generation_prompt=add_generation_prompt,
                                                  continue_final_message=not add_generation_prompt)

    # ---- tokenization -----------------------------------------------------------------------------
    def tok_encode(self, string: str, add_special_tokens=None, left_truncate_len=None, **kwargs) -> list[int]:
        """As hf's: add_special_tokens, else add_bos_token, else the tokenizer's default; never a
        second BOS on a text that starts with the prefix token (chat templates)."""
        if add_special_tokens is None:
            add_special_tokens = self.add_bos_token
            prefix = self.tokenizer.decode(self.prefix_token_id)
            if prefix and string.startswith(prefix):
                add_special_tokens = False
        extra = {} if add_special_tokens is None else {"add_special_tokens": bool(add_special_tokens)}
        ids = self.tokenizer.encode(string, **extra)
        return ids[-left_truncate_len:] if left_truncate_len else ids

    def _context_encode(self, string: str, left_truncate_len=None) -> list[int]:
        """A generation context encoded as hf's tok_batch_encode does (BOS test on bos_token)."""
        bos = getattr(self.tokenizer, "bos_token", None)
        if bos and string.startswith(bos):
            extra = {"add_special_tokens": False}
        else:
            extra = {} if self.add_bos_token is None else {"add_special_tokens": self.add_bos_token}
        ids = self.tokenizer(string, **extra)["input_ids"]
        return ids[-left_truncate_len:] if left_truncate_len else ids

    def tok_decode(self, tokens, skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=skip_special_tokens)

    # ---- log-likelihood ---------------------------------------------------------------------------
    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs):
        res = score_continuations(self._model, [(ctx, cont) for _, ctx, cont in requests], self.max_length,
                                  batch_size=self.batch_size, max_batch_tokens=self.max_batch_tokens)
        for (key, _, _), answer in zip(requests, res):
            if key is not None:
                self.cache_hook.add_partial("loglikelihood", key, answer)
        return res

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

        windows, owner = [], []
        for i, (string,) in enumerate(r.args for r in requests):
            # hf encodes the text with the tokenizer's default special tokens (a BOS for Llama-2 and
            # Gemma tokenizers) and then prefixes the windows with the prefix token
            for w in get_rolling_token_windows(token_list=self.tok_encode(string),
                                               prefix_token=self.prefix_token_id, max_seq_len=self.max_length,
                                               context_len=1):
                windows.append(make_disjoint_window(w))
                owner.append(i)
        scores = score_continuations(self._model, windows, self.max_length, batch_size=self.batch_size,
                                     max_batch_tokens=self.max_batch_tokens)
        totals = [0.0] * len(requests)
        for i, (lp, _) in zip(owner, scores):
            totals[i] += lp
        for r, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", r.args, total)
        return totals

    # ---- generation -------------------------------------------------------------------------------
    def _stop(self, until: list[str]):
        """A fastpass regex that matches any stop string, or None (then samples run to their end)."""
        key = tuple(s for s in until if s)
        if not self.stop_regex or not key:
            return None
        if key not in self._stop_cache:
            try:
                import fastpass.regex as fpre

                rx = fpre.compile("|".join(re.escape(s) for s in key))
                # probe the streamer once: a checkout whose _C predates the regex kernels cannot stream
                rx.streamer(1, fpre.token_byte_table(self.tokenizer).to(self._device), self._device)
                self._stop_cache[key] = rx
            except (ImportError, ValueError, AttributeError, RuntimeError) as exc:
                log.warning("stop strings %r run without early stopping (%s); texts are still cut at them",
                            key, exc)
                self._stop_cache[key] = None
        return self._stop_cache[key]

    def _sampling_seed(self) -> int:
        """seed= from model_args, else torch's seed now (lm-eval's --seed sets it before evaluating)."""
        return self.seed if self.seed is not None else int(torch.initial_seed())

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        from lm_eval.models.utils import postprocess_generated_text

        args = [r.args for r in requests]
        members: dict[tuple[str, str], list[int]] = {}  # (context, kwargs) -> request indices, in order
        for i, (context, gen_kwargs) in enumerate(args):
            members.setdefault((context, _kwargs_key(gen_kwargs)), []).append(i)
        calls: dict[tuple[str, int], list[str]] = {}  # (kwargs, n) -> contexts: one Sampler call each
        for (context, kkey), idx in members.items():
            calls.setdefault((kkey, len(idx)), []).append(context)
        # every group's settings are checked before anything is sampled
        plans = {}
        for kkey, n in calls:
            gen_kwargs = args[members[(calls[(kkey, n)][0], kkey)][0]][1]
            p = parse_gen_kwargs(gen_kwargs, self.max_gen_toks, self.generation_defaults)
            if p["repetition_penalty"] != 1.0 and not self._takes_penalty:
                raise ValueError(f"repetition_penalty={p['repetition_penalty']} needs Sampler.sample("
                                 "repetition_penalty=), which this fastpass build lacks: drop it from the task")
            if self.max_length - p["max_new_tokens"] <= 0:
                raise ValueError(f"max_gen_toks={p['max_new_tokens']} leaves no room for the prompt in max_length="
                                 f"{self.max_length}: lower max_gen_toks")
            plans[(kkey, n)] = p
        results: list[str | None] = [None] * len(requests)
        bar = tqdm(total=len(requests), disable=disable_tqdm or self.rank != 0, desc="fastpass generate_until")
        seed = self._sampling_seed()
        eot = self.eot_token_id
        eos = None if eot is None else self.tok_decode([eot], skip_special_tokens=False)
        for (kkey, n), contexts in calls.items():
            p = plans[(kkey, n)]
            until = p["until"] + ([eos] if eos and eos not in p["until"] else [])
            room = self.max_length - p["max_new_tokens"]
            # an empty context is conditioned on BOS/EOS, as loglikelihood does
            prompts = [self._context_encode(c, left_truncate_len=room) or [self.prefix_token_id] for c in contexts]
            extra = {"repetition_penalty": p["repetition_penalty"]} if self._takes_penalty else {}
            start = bar.n

            def progress(samples, _tokens, start=start):
                bar.update(start + samples - bar.n)

            stream = self.sampler.stream(prompts, n=n, max_new_tokens=p["max_new_tokens"],
                                         temperature=p["temperature"], top_k=p["top_k"], top_p=p["top_p"],
                                         min_p=p["min_p"], seed=seed, stream_ids=[stream_id(c, kkey) for c in contexts],
                                         stop=self._stop(until), on_progress=progress, **extra)
            for k, batch in stream:
                for i, toks in zip(members[(contexts[k], kkey)], batch.tokens[0]):
                    text = postprocess_generated_text(self.tok_decode(toks), stop=until, think_end_token=None)
                    results[i] = text
                    self.cache_hook.add_partial("generate_until", args[i], text)
        bar.close()
        return results

    def get_model_info(self) -> dict:
        return {"model_num_parameters": sum(p.numel() for p in self._model.parameters()),
                "model_dtype": str(next(self._model.parameters()).dtype), "engine": "fastpass"}


def _as_bool(v) -> bool:
    if isinstance(v, str):
        if v.lower() in ("1", "true", "yes", "on"):
            return True
        if v.lower() in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"expected a boolean, got {v!r}: use true or false")
    return bool(v)


def _as_batch_size(batch_size, max_batch_size) -> int:
    """lm-eval passes ``--batch_size`` as int or "auto[:N]"; fastpass batches by a token budget,
    so "auto" means max_batch_size (default 256) rows capped by ``max_batch_tokens``."""
    if isinstance(batch_size, str) and batch_size.startswith("auto"):
        return int(max_batch_size or 256)
    try:
        return max(1, int(batch_size))
    except (TypeError, ValueError):
        raise ValueError(f"batch_size={batch_size!r} is not a number: use an int or auto") from None


def register() -> None:
    """Register ``FastpassLM`` as lm-eval model ``fastpass`` (idempotent)."""
    # lm-eval loads its own models (hf, vllm, ...) only while its registry is empty: load them first,
    # or registering fastpass would hide them (`fastpass-lm-eval --model hf` would not find hf)
    try:
        import lm_eval.models  # noqa: F401
    except ImportError:
        pass
    from lm_eval.api.registry import register_model

    try:
        from lm_eval.api.registry import model_registry

        if MODEL_NAME in model_registry and model_registry.get(MODEL_NAME) is FastpassLM:
            return
    except ImportError:  # older lm-eval: a plain dict registry
        pass
    register_model(MODEL_NAME)(FastpassLM)


def main(argv: list[str] | None = None) -> None:
    """``lm_eval`` CLI with the ``fastpass`` model registered: same arguments as ``lm_eval``."""
    register()
    from lm_eval.__main__ import cli_evaluate

    if argv is not None:
        sys.argv = ["lm_eval", *argv]
    cli_evaluate()


if __name__ == "__main__":
    # run through the package module so the class registered is fastpass.integrations.lm_eval.FastpassLM
    from fastpass.integrations.lm_eval import main as _main

    _main()
else:
    register()
