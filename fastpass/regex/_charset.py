"""Sets of code points for one-character pattern elements, asked of ``re`` itself.

A class, a literal under IGNORECASE or ``\\w`` becomes sorted, disjoint [lo, hi] ranges of code
points. The ranges are found by running ``re`` over a string of every code point, so case folding
and Unicode categories cannot drift from Python's. Lone surrogates (U+D800..U+DFFF) are code
points a Python str can hold, and ``re`` matches them with negated classes, ``\\S``, ``\\D``,
``\\W`` and explicit ranges: they are part of the universe too."""
from __future__ import annotations

import functools
import re

from fastpass.regex._errors import UnsupportedPattern


@functools.lru_cache(maxsize=1)
def _universe() -> str:
    # Every code point in order (surrogates included): a run of consecutive matches in this
    # string is a range of code points.
    return "".join(map(chr, range(0x110000)))


@functools.lru_cache(maxsize=4096)
def codepoint_ranges(element: str, flags: int) -> tuple[tuple[int, int], ...]:
    """Ranges of code points that the one-character pattern ``element`` matches under ``flags``."""
    rx = re.compile(f"(?:{element})+", flags)
    return tuple((m.start(), m.end() - 1) for m in rx.finditer(_universe()))


def esc(cp: int) -> str:
    return f"\\U{cp:08x}"


_CAT_TEXT = {"CATEGORY_DIGIT": r"\d", "CATEGORY_NOT_DIGIT": r"\D", "CATEGORY_SPACE": r"\s",
             "CATEGORY_NOT_SPACE": r"\S", "CATEGORY_WORD": r"\w", "CATEGORY_NOT_WORD": r"\W"}


def set_text(items) -> str:
    """The parsed items of a class ``[...]`` written back as pattern text."""
    parts = []
    for op, av in items:
        name = str(op)
        if name == "NEGATE":
            parts.insert(0, "^")
        elif name == "LITERAL":
            parts.append(esc(av))
        elif name == "RANGE":
            parts.append(f"{esc(av[0])}-{esc(av[1])}")
        elif name == "CATEGORY":
            if str(av) not in _CAT_TEXT:
                raise UnsupportedPattern(f"character category {av} is not supported by fastpass.regex")
            parts.append(_CAT_TEXT[str(av)])
        else:
            raise UnsupportedPattern(f"set item {name} is not supported by fastpass.regex")
    return "[" + "".join(parts) + "]"
