"""The answer rule of a screen: compiled once (a bad pattern fails before any sampling), used as
the sampler's streaming stop and to grade token ids where they were generated (``fp.grade`` on
token bytes: the C++ tier on CPU, the CUDA kernel on a GPU)."""
from __future__ import annotations

import re
from dataclasses import replace

import torch

from fastpass import grading as _grading
from fastpass import regex as _regex
from fastpass.grading import GradePreset
from fastpass.screen.errors import ScreenError


class AnswerRule:
    """A ``GradePreset`` plus what screening needs around it: the stop regex and token bytes."""

    def __init__(self, rule: GradePreset, pattern: str | None = None, flags: int | None = None,
                 normalize: str | None = None, occurrence: str | None = None):
        if pattern is not None:  # a user pattern replaces the preset's (and its fallback)
            rule = GradePreset("custom", pattern, rule.flags if flags is None else int(flags),
                               normalize=rule.normalize, occurrence=rule.occurrence)
        elif flags is not None:
            rule = replace(rule, flags=int(flags))
        overrides = {k: v for k, v in (("normalize", normalize), ("occurrence", occurrence)) if v is not None}
        rule = replace(rule, **overrides)
        if rule.occurrence not in ("first", "last"):
            raise ScreenError(f"occurrence must be 'first' or 'last', got {rule.occurrence!r}")
        if rule.normalize not in _grading.NORMALIZERS:
            raise ScreenError(f"normalize must be one of {', '.join(_grading.NORMALIZERS)}, got {rule.normalize!r}")
        self.rule = rule
        self.regex = self._compile(rule)
        if rule.fallback is not None:
            self._compile(rule.fallback)
        if self.regex.groups < rule.group:
            raise ScreenError(f"answer pattern {rule.pattern!r} has no capture group {rule.group}: wrap the "
                              "answer in ( )")
        # Stopping at the first closed match is sound only when the first match is graded and the
        # normaliser reads nothing beyond it (boxed/math look for the last \boxed{} in the text).
        first_only = rule.occurrence == "first" and rule.normalize in ("exact", "strip", "numeric")
        self.stop = self.regex if first_only else None
        self._token_bytes = None

    @staticmethod
    def _compile(rule: GradePreset):
        try:
            return _regex.compile(rule.pattern, rule.flags)
        except re.error as exc:
            raise ScreenError(f"answer pattern {rule.pattern!r} is not a valid regex ({exc}): fix --pattern") from None
        except ValueError as exc:  # fp.regex.UnsupportedPattern names the construct
            raise ScreenError(f"answer pattern {rule.pattern!r}: {exc}: rewrite it without that construct") from None

    def grade_tokens(self, tokens: list[list[int]], golds: list[str], tokenizer, eos_ids, device) -> list[bool]:
        """Grades generated token ids (a final EOS is not part of the text) on ``device``."""
        if self._token_bytes is None or self._token_bytes.device != torch.device(device):
            self._token_bytes = _regex.token_byte_table(tokenizer).to(device)
        eos = set(eos_ids)
        lengths = [len(t) - (1 if t and t[-1] in eos else 0) for t in tokens]
        width = max(1, max(lengths, default=1))
        ids = torch.zeros((len(tokens), width), dtype=torch.int64)
        for i, (t, n) in enumerate(zip(tokens, lengths)):
            ids[i, :n] = torch.as_tensor(t[:n], dtype=torch.int64)
        out = _grading.grade(ids.to(device), golds, pattern=self.rule, token_bytes=self._token_bytes,
                             lengths=torch.as_tensor(lengths, dtype=torch.int64).to(device), device=device)
        return [bool(x) for x in out.cpu().tolist()]

    def grade_texts(self, texts: list[str], golds: list[str]) -> list[bool]:
        return [bool(x) for x in _grading.grade(texts, golds, pattern=self.rule).cpu().tolist()]

    def describe(self) -> dict:
        r = self.rule
        return {"name": r.name, "pattern": r.pattern, "flags": r.flags, "group": r.group, "normalize": r.normalize,
                "occurrence": r.occurrence, "fallback": r.fallback.pattern if r.fallback else None,
                "stop_early": self.stop is not None}
