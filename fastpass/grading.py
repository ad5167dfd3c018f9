"""Answer grading: extract a group with a regex, normalise, compare with the gold answer.

``grade`` runs extraction and the exact/strip/numeric/boxed comparison inside the regex kernels
(on the device for token ids on a GPU); ``math`` and the rare undecided numeric case (a candidate
longer than the kernels' buffer) are finished on the host with the same functions below, which
are also the reference the kernels are tested against."""
from __future__ import annotations

import numbers
import re
from dataclasses import dataclass, replace
from decimal import Decimal, localcontext
from fractions import Fraction

import numpy as np
import torch

from fastpass import regex as _regex
from fastpass.regex.normalize import compare_key, gold_key, last_boxed, numeric_key

__all__ = ["GradePreset", "R1_ANSWER", "GSM8K_ANSWER", "BOXED", "LAST_NUMBER", "grade",
           "grade_text", "gold_key", "gold_text", "numeric_key", "last_boxed", "math_key"]

NORMALIZERS = ("exact", "strip", "numeric", "boxed", "math")


@dataclass(frozen=True)
class GradePreset:
    """A named grading rule: pattern + flags, group, normaliser, occurrence, optional fallback
    (tried on items where the pattern finds nothing)."""
    name: str
    pattern: str
    flags: int = 0
    group: int = 1
    normalize: str = "strip"
    occurrence: str = "first"
    fallback: "GradePreset | None" = None


R1_ANSWER = GradePreset("r1", r"<answer>(.*?)</answer>", re.DOTALL)
GSM8K_ANSWER = GradePreset(
    "gsm8k", r"#### (\-?[0-9\.\,]+)", normalize="numeric",
    fallback=GradePreset("gsm8k-fallback", r"[Tt]he answer is:?\s*\$?\s*(\-?[0-9\.\,]+)",
                         normalize="numeric"))
BOXED = GradePreset("boxed", r"(.*)", re.DOTALL, normalize="boxed")
LAST_NUMBER = GradePreset("last-number", r"(-?[0-9][0-9,]*(?:\.[0-9]+)?)", normalize="numeric",
                          occurrence="last")

# ---- host normalisers (the reference semantics) ---------------------------------------------
# exact / strip / numeric / boxed are the kernels' own comparisons (fastpass.regex.normalize);
# math is host-only.
_LATEX_DROP = re.compile(r"\\left|\\right|\\!|\\,|\\;|\\:|\\displaystyle|\^\{?\\circ\}?|\\%|%|\s+")
_TEXT = re.compile(r"\\(?:text|mbox|mathrm)\{[^{}]*\}")
_FRAC = re.compile(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}")
_FRAC_SHORT = re.compile(r"\\[dt]?frac(\d)(\d)")


def math_key(s: str):
    """Light LaTeX clean-up, then a number (Fraction) when the answer is one, else the text."""
    t = last_boxed(s) if "\\boxed{" in s else s
    t = t if t is not None else s
    t = _TEXT.sub("", t)
    t = _LATEX_DROP.sub("", t)
    t = _FRAC_SHORT.sub(r"\\frac{\1}{\2}", t)
    t = t.strip("$").rstrip(".")
    m = _FRAC.fullmatch(t)
    if m:
        a, b = numeric_key(m.group(1)), numeric_key(m.group(2))
        try:
            return Fraction(a) / Fraction(b)
        except (ValueError, ZeroDivisionError):
            return t
    k = numeric_key(t)
    if re.fullmatch(r"-?[0-9]+(?:\.[0-9]+)?", k):
        return Fraction(k)
    if re.fullmatch(r"-?[0-9]+/[0-9]+", k):
        try:
            return Fraction(k)
        except ZeroDivisionError:
            return k
    return k


def _gold_keys(golds: list, normalize: str):
    """(keys, to_str) for the kernels: exact/strip/boxed golds are their own keys, read in place
    by the C++ tier (to_str converts them only if one is not a str); numeric keys are computed
    here, converting as they go."""
    if normalize in ("exact", "strip", "boxed"):
        return golds, gold_texts
    if normalize == "numeric":
        return [numeric_key(gold_text(i, g)) for i, g in enumerate(golds)], None
    raise ValueError(f"normalize must be one of {', '.join(NORMALIZERS)}, got {normalize!r}")


# ---- golds: str, or numbers written as plain decimals; anything else is an error --------------
def gold_text(i: int, g) -> str:
    """Gold answer ``i`` as text: a str as is; an int, float, Decimal or terminating Fraction as
    its plain decimal (1e21 -> "1000000000000000000000", 0.1 -> "0.1"); None, bools and other
    objects are one-line errors naming the fix, never stringified."""
    if isinstance(g, str):
        return g
    if g is None:
        raise ValueError(f"gold {i} is None: pass every gold answer as a str (leave out items "
                         "that have no gold answer)")
    if isinstance(g, (bool, np.bool_)):
        raise TypeError(f"gold {i} is the bool {g}: pass the gold answer as a str")
    if isinstance(g, numbers.Integral):
        return str(int(g))
    if isinstance(g, Fraction):
        d = g.denominator
        for f in (2, 5):
            while d % f == 0:
                d //= f
        if d != 1:
            raise ValueError(f"gold {i} is the Fraction {g}, which has no finite decimal: pass it "
                             f"as a str (e.g. {str(g)!r}) and grade with normalize='math'")
        with localcontext() as ctx:
            ctx.prec = 4 * len(str(g.denominator)) + len(str(g.numerator)) + 8  # exact
            g = Decimal(g.numerator) / Decimal(g.denominator)
    if isinstance(g, Decimal):
        if not g.is_finite():
            raise ValueError(f"gold {i} is {g}: pass a finite number or a str")
        return format(g.normalize(), "f")
    if isinstance(g, numbers.Real):
        x = g if isinstance(g, np.floating) else float(g)
        if not np.isfinite(x):
            raise ValueError(f"gold {i} is {float(x)}: pass a finite number or a str")
        # the shortest digits that round-trip (repr's), written without an exponent
        return np.format_float_positional(x, unique=True, trim="-")
    if isinstance(g, (bytes, bytearray)):
        raise TypeError(f"gold {i} is bytes: decode it to a str first (gold.decode('utf-8'))")
    raise TypeError(f"gold {i} is a {type(g).__name__}: pass golds as str (or plain numbers)")


def gold_texts(golds) -> list:
    return [gold_text(i, g) for i, g in enumerate(golds)]


def _gold_list(golds) -> list:
    if isinstance(golds, (str, bytes)):
        raise ValueError(f"golds is one {type(golds).__name__} ({golds[:40]!r}), not one gold per "
                         "completion: pass a list, e.g. [gold] * len(completions)")
    if isinstance(golds, torch.Tensor):
        golds = golds.cpu().numpy()
    if type(golds) is list:
        return golds
    try:
        return list(golds)
    except TypeError:
        raise TypeError(f"golds must be a list with one gold per completion, got "
                        f"{type(golds).__name__}") from None


def grade_text(extracted: str, gold: str, normalize: str, gold_is_key: bool = False) -> bool:
    """Reference comparison of one extracted answer with its gold answer."""
    if normalize == "math":
        return _math_equal(extracted, gold)
    if normalize not in NORMALIZERS:
        raise ValueError(f"normalize must be one of {', '.join(NORMALIZERS)}, got {normalize!r}")
    return compare_key(extracted, gold if gold_is_key else gold_key(gold, normalize), normalize)


def _math_equal(extracted: str, gold: str) -> bool:
    a, b = math_key(extracted), math_key(gold)
    if a == b:
        return True
    if isinstance(a, Fraction) != isinstance(b, Fraction):
        try:  # math-verify, when installed, decides what the light clean-up cannot
            from math_verify import parse, verify  # type: ignore[import-not-found]
        except ImportError:
            return False
        return bool(verify(parse(gold), parse(extracted)))
    return False


# ---- batch grading ------------------------------------------------------------------------------
def _resolve(pattern, flags, group, normalize, occurrence):
    if isinstance(pattern, GradePreset):
        preset = pattern
    else:
        rx = pattern if isinstance(pattern, (_regex.Regex, re.Pattern)) else None
        preset = GradePreset("custom", rx.pattern if rx is not None else pattern,
                             (rx.flags if rx is not None else 0) | flags)
    overrides = {k: v for k, v in (("group", group), ("normalize", normalize),
                                   ("occurrence", occurrence)) if v is not None}
    return replace(preset, **overrides)


def grade(completions, golds, pattern=R1_ANSWER, group=None, normalize=None, occurrence=None,
          flags: int = 0, token_bytes=None, lengths=None, device=None, backend=None) -> torch.Tensor:
    """bool[B]: whether each completion's extracted answer equals its gold answer.

    completions: list of str, or token ids [B, L] with ``token_bytes`` (and optional lengths).
    pattern: a preset (R1_ANSWER, GSM8K_ANSWER, BOXED, LAST_NUMBER), a pattern string or a
    compiled regex. group / normalize / occurrence override the preset's."""
    p = _resolve(pattern, flags, group, normalize, occurrence)
    if p.normalize not in NORMALIZERS:
        raise ValueError(f"normalize must be one of {', '.join(NORMALIZERS)}, got {p.normalize!r}")
    golds = _gold_list(golds)  # validated (and numbers written out) by _gold_keys
    items = _regex.make_items(completions, token_bytes, lengths)
    if device is not None:
        items = _regex._to_device(items, torch.device(device))
    if len(golds) != items.batch:
        raise ValueError(f"got {items.batch} completions but {len(golds)} golds: pass one gold per completion")
    rx = _regex.compile(p.pattern, p.flags)
    if not 0 <= p.group <= rx.groups:
        raise ValueError(f"group {p.group} does not exist in {p.pattern!r} ({rx.groups} groups)")
    last = _regex._last(rx, p.occurrence)
    if p.normalize == "math":
        raw = _regex.run(rx.program.code, rx.n_slots, items, occurrence_last=last, backend=backend)
        result = _host_math(items, raw, p.group, gold_texts(golds))
    else:
        keys, to_str = _gold_keys(golds, p.normalize)
        raw = _regex.run(rx.program.code, rx.n_slots, items, occurrence_last=last,
                         grade=(p.group, p.normalize, keys, to_str), backend=backend, offsets=())
        result = _finish_undecided(items, raw, p, keys, rx, last, backend)
    if p.fallback is not None:
        missing = ~raw.found.to(result.device)
        if bool(missing.any()):
            idx = torch.nonzero(missing).flatten().cpu()
            sub = _subset(items, idx)
            fb = grade(sub, [golds[i] for i in idx.tolist()], p.fallback, device=items.device,
                       backend=backend)
            result[idx.to(result.device)] = fb.to(result.device)
    return result


def _finish_undecided(items, raw, p, keys, rx, last, backend) -> torch.Tensor:
    verdict = raw.grade
    undecided = verdict < 0
    if bool(undecided.any()):  # numeric candidates longer than the kernels' buffer
        verdict = verdict.clone()
        idx = torch.nonzero(undecided).flatten().cpu()
        sub = _regex.make_items(_subset(items, idx))
        spans = _regex.run(rx.program.code, rx.n_slots, sub, occurrence_last=last,
                           backend=backend, offsets=("cp",)).cp_slots.cpu()
        for j, i in enumerate(idx.tolist()):
            s, e = int(spans[j, 2 * p.group]), int(spans[j, 2 * p.group + 1])
            verdict[i] = int(grade_text(sub.text(j)[s:e], keys[i], p.normalize, gold_is_key=True))
    return verdict > 0


def _host_math(items, raw, group, golds) -> torch.Tensor:
    found = raw.found.cpu()
    starts = raw.cp_slots[:, 2 * group].cpu()
    ends = raw.cp_slots[:, 2 * group + 1].cpu()
    out = torch.zeros(items.batch, dtype=torch.bool)
    for i in range(items.batch):
        if bool(found[i]) and int(starts[i]) >= 0:
            out[i] = _math_equal(items.text(i)[int(starts[i]):int(ends[i])], golds[i])
    return out.to(raw.found.device)


def _subset(items, idx):
    if items.texts is not None:
        return [items.texts[i] for i in idx.tolist()]
    return _regex.Items(ids=items.ids[idx.to(items.ids.device)],
                        lengths=items.lengths[idx.to(items.ids.device)],
                        token_bytes=items.token_bytes)
