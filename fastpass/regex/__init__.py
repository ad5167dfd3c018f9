"""Python ``re`` semantics on CPU and GPU, in linear time, with streaming early stop.

    rx = fastpass.regex.compile(r"<answer>(.*?)</answer>", re.DOTALL)
    rx.search(text)                         # same spans and groups as re.search
    rx.search_batch(texts)                  # or token ids + token_bytes=token_byte_table(tok)
    rx.streamer(batch_size, token_bytes, device).step(token_ids)   # bool[N] final

Patterns are parsed by Python's own parser and compiled to a Pike VM program (_compile.py);
constructs a Pike VM cannot run exactly like ``re`` raise UnsupportedPattern."""
from __future__ import annotations

import functools
import re as _re

import numpy as np
import torch

from fastpass.regex._compile import UnsupportedPattern, compile_program
from fastpass.regex.batch import Items, make_items, run
from fastpass.regex.stream import Streamer
from fastpass.regex.tokens import TokenBytes, token_byte_table

__all__ = ["compile", "Regex", "Match", "BatchMatch", "Streamer", "TokenBytes",
           "token_byte_table", "UnsupportedPattern", "error"]

error = _re.error


class Match:
    """The subset of ``re.Match`` a grader needs; offsets are in code points, as in ``re``."""

    def __init__(self, regex: "Regex", string: str, slots):
        self.re = regex
        self.string = string
        self._slots = [int(v) for v in slots]

    def _index(self, g) -> int:
        if isinstance(g, str):
            if g not in self.re.groupindex:
                raise IndexError(f"no such group: {g!r}")
            return self.re.groupindex[g]
        if not 0 <= g <= self.re.groups:
            raise IndexError(f"no such group: {g}")
        return g

    def span(self, g=0) -> tuple[int, int]:
        i = self._index(g)
        return self._slots[2 * i], self._slots[2 * i + 1]

    def start(self, g=0) -> int:
        return self.span(g)[0]

    def end(self, g=0) -> int:
        return self.span(g)[1]

    def group(self, *gs):
        if not gs:
            gs = (0,)
        out = []
        for g in gs:
            s, e = self.span(g)
            out.append(None if s < 0 else self.string[s:e])
        return out[0] if len(out) == 1 else tuple(out)

    def __getitem__(self, g):
        return self.group(g)

    def groups(self, default=None) -> tuple:
        return tuple(default if self.span(g)[0] < 0 else self.group(g)
                     for g in range(1, self.re.groups + 1))

    def groupdict(self, default=None) -> dict:
        return {name: (default if self.span(i)[0] < 0 else self.group(i))
                for name, i in self.re.groupindex.items()}

    def __repr__(self) -> str:
        return f"<fastpass.regex.Match object; span={self.span()}, match={self.group()!r}>"


class BatchMatch:
    """Results of ``search_batch``: found bool[B]; starts/ends int64[B, G+1] (code points, -1
    where a group did not take part); byte_starts/byte_ends into each item's UTF-8 bytes (for
    str items computed on first use: most callers never need them)."""

    def __init__(self, regex: "Regex", items, raw, byte_slots=None):
        self.re = regex
        self._items = items
        self.found = raw.found
        self.starts = raw.cp_slots[:, 0::2]
        self.ends = raw.cp_slots[:, 1::2]
        self._byte_slots = raw.byte_slots if raw.byte_slots.shape[0] == self.found.shape[0] else None
        self._byte_fn = byte_slots
        self._host = None

    def _bytes(self):
        if self._byte_slots is None:
            self._byte_slots = self._byte_fn()
        return self._byte_slots

    @property
    def byte_starts(self):
        return self._bytes()[:, 0::2]

    @property
    def byte_ends(self):
        return self._bytes()[:, 1::2]

    def __len__(self) -> int:
        return self.found.shape[0]

    def _spans(self):
        if self._host is None:
            self._host = (self.starts.cpu().numpy(), self.ends.cpu().numpy())
        return self._host

    def span(self, i: int, g=0) -> tuple[int, int]:
        g = self.re.groupindex.get(g, g) if isinstance(g, str) else g
        s, e = self._spans()
        return int(s[i, g]), int(e[i, g])

    def group(self, i: int, g=0):
        """Text of group g of item i (None when item i has no match or g did not take part)."""
        s, e = self.span(i, g)
        return None if s < 0 else self._items.text(i)[s:e]

    def match(self, i: int):
        if not bool(self.found[i]):
            return None
        s, e = self._spans()
        slots = np.stack([s[i], e[i]], axis=1).ravel()
        return Match(self.re, self._items.text(i), slots)


class Regex:
    def __init__(self, pattern: str, flags: int = 0):
        self.pattern = pattern
        self.flags = int(flags)
        self.program = compile_program(pattern, int(flags))
        self.groups = self.program.n_groups
        self.groupindex = dict(self.program.group_index)
        self._reference = None

    def __repr__(self) -> str:
        return f"fastpass.regex.compile({self.pattern!r}, {self.flags})"

    @property
    def n_slots(self) -> int:
        return 2 * (self.groups + 1)

    def search(self, string: str, backend=None):
        """Like ``re.search``: a Match or None."""
        if not isinstance(string, str):
            raise TypeError(f"search takes a str, not {type(string).__name__}")
        raw = run(self.program.code, self.n_slots, make_items([string]), backend=backend,
                  offsets=("cp",))
        if not bool(raw.found[0]):
            return None
        return Match(self, string, raw.cp_slots[0].tolist())

    def search_batch(self, items, device=None, token_bytes=None, lengths=None,
                     occurrence="first", backend=None) -> BatchMatch:
        """Search every item: a list of str, or token ids [B, L] with ``token_bytes`` (and
        optional ``lengths`` [B]; negative ids carry no bytes). ``device`` moves the work (text
        items are copied there); occurrence="last" keeps the last non-overlapping match."""
        it = make_items(items, token_bytes, lengths)
        if device is not None:
            it = _to_device(it, torch.device(device))
        last = _last(self, occurrence)
        # Token items are searched in bytes: code point offsets cost a walk the byte offsets come
        # with. Str items are searched in code points; their byte offsets wait until asked for.
        offsets = ("cp",) if it.texts is not None else ("cp", "byte")
        raw = run(self.program.code, self.n_slots, it, occurrence_last=last, backend=backend,
                  offsets=offsets)
        return BatchMatch(self, it, raw, lambda: run(
            self.program.code, self.n_slots, it, occurrence_last=last, backend=backend,
            offsets=("byte",)).byte_slots)

    def streamer(self, batch_size: int, token_bytes: TokenBytes, device=None, backend=None) -> Streamer:
        return Streamer(self, batch_size, token_bytes, device, backend)


def _last(regex: Regex, occurrence: str) -> bool:
    if occurrence not in ("first", "last"):
        raise ValueError(f"occurrence must be 'first' or 'last', got {occurrence!r}")
    if occurrence == "last" and regex.program.can_match_empty:
        raise ValueError(f"occurrence='last' needs a pattern that cannot match the empty string; "
                         f"{regex.pattern!r} can")
    return occurrence == "last"


def _to_device(items, device):
    if items.texts is not None:
        return Items(texts=items.texts, text_device=device)
    return Items(ids=items.ids.to(device), lengths=items.lengths.to(device),
                 token_bytes=items.token_bytes.to(device))


def compile(pattern, flags: int = 0) -> Regex:  # noqa: A001 - mirrors re.compile
    """Compile like ``re.compile``; raises re.error for invalid syntax and UnsupportedPattern
    (a ValueError) for constructs fastpass cannot run exactly like ``re``."""
    if isinstance(pattern, Regex):
        return pattern
    if isinstance(pattern, _re.Pattern):
        return _cached(pattern.pattern, int(pattern.flags))
    if not isinstance(pattern, str):
        raise TypeError(f"pattern must be a str or a compiled re.Pattern, got {type(pattern).__name__}")
    return _cached(pattern, int(flags))


@functools.lru_cache(maxsize=256)
def _cached(pattern: str, flags: int) -> Regex:  # like re's cache: grading compiles the same rule per call
    return Regex(pattern, flags)
