"""Host reference of the answer comparisons the regex kernels run (regex_grade.h): exact, strip,
numeric and boxed. ``fastpass.grading`` builds its public grader on these; they live here so
the engine's reference tier needs nothing above it (the import graph points one way:
grading -> regex)."""
from __future__ import annotations

import re

NORMALIZE_CODES = {"exact": 0, "strip": 1, "numeric": 2, "boxed": 3}  # regex_grade.h: Normalize

_NUMBER = re.compile(r"([+-]?)([0-9]*)(?:(\.)([0-9]*))?")


def numeric_key(s: str) -> str:
    """Drop '$' and ',', strip, drop trailing '.', then a canonical decimal ("1,000" and
    "1000.0" -> "1000"; "-0.50" -> "-0.5"); text that is not a number is its own key."""
    t = s.replace("$", "").replace(",", "").strip().rstrip(".")
    m = _NUMBER.fullmatch(t)
    if not m or not (m.group(2) or (m.group(3) and m.group(4))):
        return t
    sign, whole, frac = m.group(1), m.group(2).lstrip("0"), (m.group(4) or "").rstrip("0")
    if not whole and not frac:
        return "0"
    return ("-" if sign == "-" else "") + (whole or "0") + ("." + frac if frac else "")


def last_boxed(s: str) -> str | None:
    """Content of the last balanced ``\\boxed{...}`` in s, or None."""
    best, i = None, s.find("\\boxed{")
    while i >= 0:
        depth, j = 1, i + 7
        while j < len(s):
            if s[j] == "{":
                depth += 1
            elif s[j] == "}":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        if depth == 0:
            best = s[i + 7:j]
        i = s.find("\\boxed{", i + 1)
    return best


def gold_key(gold: str, normalize: str) -> str:
    """What the kernels compare with: the gold itself (strip and boxed strip it as they
    compare), or its numeric key."""
    if normalize in ("exact", "strip", "boxed"):
        return gold
    if normalize == "numeric":
        return numeric_key(gold)
    raise ValueError(f"normalize must be one of {', '.join(NORMALIZE_CODES)}, got {normalize!r}")


def compare_key(extracted: str, key: str, normalize: str) -> bool:
    """Whether an extracted answer equals a gold key (from ``gold_key``) under ``normalize``."""
    if normalize == "exact":
        return extracted == key
    if normalize == "strip":
        return extracted.strip() == key.strip()
    if normalize == "boxed":
        inner = last_boxed(extracted)
        return inner is not None and inner.strip() == key.strip()
    if normalize == "numeric":
        return numeric_key(extracted) == key
    raise ValueError(f"normalize must be one of {', '.join(NORMALIZE_CODES)}, got {normalize!r}")
