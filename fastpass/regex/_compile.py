"""Pattern -> Pike VM program.

Python's own parser (``re._parser``, ``sre_parse`` before 3.11) reads the pattern, so fastpass
accepts and rejects exactly the syntax ``re`` does. The parse tree is compiled to a small
program of priority-ordered instructions over code points; the sets of code points that a
class, a literal under IGNORECASE or ``\\w`` accepts are taken from ``re`` itself (see
``_codepoint_ranges``), so case folding and Unicode categories cannot drift from Python's.

Program layout (int32, shared by the Python reference VM and the C++/CUDA core):
  header [HEADER]: magic, n_instr, n_slots, lookahead, n_pool, flags, instr_off, pool_off,
                   first_ascii bitmap (4 words: ASCII bytes that can start a match), lit_off
  instr [n_instr, 4]: op, a, b, c
  pool: [lo, hi] code point pairs, sorted and disjoint (classes point into it)
  literals: prefix_len, required_len, prefix code points, required code points: every match
            starts with the prefix and contains the required literal (prefilters)
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np

try:  # Python 3.11+
    from re import _constants as _c
    from re import _parser as _p
except ImportError:  # pragma: no cover - Python < 3.11
    import sre_constants as _c  # type: ignore[no-redef]
    import sre_parse as _p  # type: ignore[no-redef]


class UnsupportedPattern(ValueError):
    """The pattern is valid Python syntax but uses a construct fastpass does not run."""


# Opcodes (mirrored in csrc/include/fastpass/regex_vm.h).
CHAR, SET, ANY, ANYNL, SPLIT, JMP, SAVE, ASSERT, MATCH = range(9)
# Assertion kinds.
A_BEGIN_STRING, A_BEGIN_LINE, A_END_STRING, A_END_LINE, A_END_DOLLAR, A_BOUNDARY, A_NOT_BOUNDARY = range(7)
LOOKAHEAD_NEED = {A_BEGIN_STRING: 0, A_BEGIN_LINE: 0, A_END_STRING: 1, A_END_LINE: 1,
                  A_END_DOLLAR: 2, A_BOUNDARY: 1, A_NOT_BOUNDARY: 1}
MAGIC = 0x52584650  # "PFXR"
HEADER = 13
MAX_LITERAL = 32
# Program flags.
PF_SKIP_ASCII = 1  # no assertion before the first consuming instruction: idle scans may skip bytes
PF_FIRST_ASCII = 2  # ... and no match starts with a non-ASCII code point: skip those too
PF_NO_ASSERT = 4  # no assertion anywhere: stable loops (like .*? before a literal) may fast-forward
PF_PREFIX_JUMP = 8  # a found literal prefix may be consumed in one move (see regex_vm.h)
MAX_INSTR = 20000

_I, _S, _M, _A, _X = re.IGNORECASE, re.DOTALL, re.MULTILINE, re.ASCII, re.VERBOSE
_UNSUPPORTED = {
    "GROUPREF": "backreference", "GROUPREF_IGNORE": "backreference",
    "GROUPREF_UNI_IGNORE": "backreference", "GROUPREF_LOC_IGNORE": "backreference",
    "GROUPREF_EXISTS": "conditional group (?(id)yes|no)", "ATOMIC_GROUP": "atomic group (?>...)",
    "POSSESSIVE_REPEAT": "possessive quantifier", "POSSESSIVE_REPEAT_ONE": "possessive quantifier",
}


@functools.lru_cache(maxsize=1)
def _universe() -> str:
    # Every code point UTF-8 can carry (no surrogates), in order: a run of consecutive matches
    # in this string is a range of code points.
    return "".join(map(chr, range(0xD800))) + "".join(map(chr, range(0xE000, 0x110000)))


def _index_to_cp(i: int) -> int:
    return i if i < 0xD800 else i + 0x800


@functools.lru_cache(maxsize=4096)
def _codepoint_ranges(element: str, flags: int) -> tuple[tuple[int, int], ...]:
    """Ranges of code points that the one-character pattern ``element`` matches under ``flags``,
    asked of ``re`` itself so IGNORECASE folding and Unicode classes are exactly Python's."""
    rx = re.compile(f"(?:{element})+", flags)
    out = []
    for m in rx.finditer(_universe()):
        lo, hi = _index_to_cp(m.start()), _index_to_cp(m.end() - 1)
        if lo < 0xD800 <= hi:  # a run across the surrogate gap is two ranges in cp space
            out += [(lo, 0xD7FF), (0xE000, hi)]
        else:
            out.append((lo, hi))
    return tuple(out)


def _esc(cp: int) -> str:
    return f"\\U{cp:08x}"


_CAT_TEXT = {"CATEGORY_DIGIT": r"\d", "CATEGORY_NOT_DIGIT": r"\D", "CATEGORY_SPACE": r"\s",
             "CATEGORY_NOT_SPACE": r"\S", "CATEGORY_WORD": r"\w", "CATEGORY_NOT_WORD": r"\W"}


def _set_text(items) -> str:
    parts = []
    for op, av in items:
        name = str(op)
        if name == "NEGATE":
            parts.insert(0, "^")
        elif name == "LITERAL":
            parts.append(_esc(av))
        elif name == "RANGE":
            parts.append(f"{_esc(av[0])}-{_esc(av[1])}")
        elif name == "CATEGORY":
            if str(av) not in _CAT_TEXT:
                raise UnsupportedPattern(f"character category {av} is not supported")
            parts.append(_CAT_TEXT[str(av)])
        else:
            raise UnsupportedPattern(f"set item {name} is not supported")
    return "[" + "".join(parts) + "]"


@dataclass
class Program:
    code: np.ndarray            # int32 flat program (header + instr + pool)
    n_groups: int               # capturing groups (not counting group 0)
    group_index: dict           # name -> number
    lookahead: int              # code points of lookahead the assertions need (0..2)
    first_ascii: np.ndarray     # bool[128]: ASCII bytes that can start a match (PF_SKIP_ASCII)
    can_match_empty: bool


class _Compiler:
    def __init__(self):
        self.instr: list[list[int]] = []
        self.pool: list[tuple[int, int]] = []
        self.pool_index: dict = {}
        self.lookahead = 0

    def emit(self, op, a=0, b=0, c=0) -> int:
        self.instr.append([op, a, b, c])
        if len(self.instr) > MAX_INSTR:
            raise UnsupportedPattern(
                f"pattern compiles to more than {MAX_INSTR} instructions (large counted "
                "repetition of a large group): use a smaller {m,n}")
        return len(self.instr) - 1

    def ranges(self, rngs) -> tuple[int, int]:
        rngs = tuple(rngs)
        if rngs not in self.pool_index:
            self.pool_index[rngs] = (len(self.pool), len(rngs))
            self.pool.extend(rngs)
        return self.pool_index[rngs]

    def consume_set(self, element: str, flags: int) -> None:
        off, n = self.ranges(_codepoint_ranges(element, flags & (_I | _A | _S)))
        self.emit(SET, off, n)

    def word_class(self, flags: int) -> tuple[int, int]:
        return self.ranges(_codepoint_ranges(r"\w", flags & _A))

    # -- tree walk ---------------------------------------------------------------------
    def seq(self, items, flags: int) -> None:
        for op, av in items:
            self.node(str(op), av, flags)

    def node(self, name: str, av, flags: int) -> None:
        if name in _UNSUPPORTED:
            raise UnsupportedPattern(f"{_UNSUPPORTED[name]} is not supported by fastpass.regex")
        if name in ("ASSERT", "ASSERT_NOT"):
            neg = name == "ASSERT_NOT"
            kind, syntax = ("lookbehind", "(?<!...)" if neg else "(?<=...)") if av[0] < 0 else \
                ("lookahead", "(?!...)" if neg else "(?=...)")
            raise UnsupportedPattern(f"{'negative ' if neg else ''}{kind} {syntax} is not "
                                     "supported by fastpass.regex")
        if name == "LITERAL":
            if flags & _I:
                self.consume_set(_esc(av), flags)
            else:
                self.emit(CHAR, av)
        elif name == "NOT_LITERAL":
            self.consume_set(f"[^{_esc(av)}]", flags)
        elif name == "ANY":
            self.emit(ANY if flags & _S else ANYNL)
        elif name == "IN":
            self.consume_set(_set_text(av), flags)
        elif name == "BRANCH":
            self.branch(av[1], flags)
        elif name == "SUBPATTERN":
            group, add, remove, sub = av
            inner = (flags | add) & ~remove
            if group is not None:
                self.emit(SAVE, 2 * group)
            self.seq(sub, inner)
            if group is not None:
                self.emit(SAVE, 2 * group + 1)
        elif name in ("MAX_REPEAT", "MIN_REPEAT"):
            self.repeat(av, flags, greedy=name == "MAX_REPEAT")
        elif name == "AT":
            self.at(str(av), flags)
        else:
            raise UnsupportedPattern(f"regex construct {name} is not supported by fastpass.regex")

    def branch(self, alts, flags: int) -> None:
        jumps = []
        for i, alt in enumerate(alts):
            if i < len(alts) - 1:
                split = self.emit(SPLIT)
                self.instr[split][1] = len(self.instr)
                self.seq(alt, flags)
                jumps.append(self.emit(JMP))
                self.instr[split][2] = len(self.instr)
            else:
                self.seq(alt, flags)
        for j in jumps:
            self.instr[j][1] = len(self.instr)

    def repeat(self, av, flags: int, greedy: bool) -> None:
        lo, hi, sub = av
        unbounded = hi == _c.MAXREPEAT
        if (unbounded or hi > lo) and _nullable(sub):
            # sre stops a loop after an iteration that matched nothing but keeps that
            # iteration's captures; a Pike VM cannot reproduce that without per-thread
            # iteration state, so refuse rather than answer differently.
            raise UnsupportedPattern(
                "a repeated group that can match the empty string (like (a*)* or (a|)+) is "
                "not supported by fastpass.regex: make the repeated part consume a character")
        for _ in range(lo):
            self.seq(sub, flags)
        if unbounded:
            loop = self.emit(SPLIT)
            body = len(self.instr)
            self.seq(sub, flags)
            self.emit(JMP, loop)
            self._split_to(loop, body, len(self.instr), greedy)
        else:
            splits = []
            for _ in range(hi - lo):
                s = self.emit(SPLIT)
                splits.append((s, len(self.instr)))
                self.seq(sub, flags)
            for s, body in splits:
                self._split_to(s, body, len(self.instr), greedy)

    def _split_to(self, at: int, body: int, exit_: int, greedy: bool) -> None:
        self.instr[at][1:3] = [body, exit_] if greedy else [exit_, body]

    def at(self, code: str, flags: int) -> None:
        multiline = bool(flags & _M)
        kind = {
            "AT_BEGINNING": A_BEGIN_LINE if multiline else A_BEGIN_STRING,
            "AT_BEGINNING_STRING": A_BEGIN_STRING,
            "AT_END": A_END_LINE if multiline else A_END_DOLLAR,
            "AT_END_STRING": A_END_STRING,
            "AT_BOUNDARY": A_BOUNDARY,
            "AT_NON_BOUNDARY": A_NOT_BOUNDARY,
        }.get(code)
        if kind is None:
            raise UnsupportedPattern(f"anchor {code} is not supported by fastpass.regex")
        off, n = self.word_class(flags) if kind in (A_BOUNDARY, A_NOT_BOUNDARY) else (0, 0)
        self.emit(ASSERT, kind, off, n)
        self.lookahead = max(self.lookahead, LOOKAHEAD_NEED[kind])


def _literals(tree, flags: int):
    """(prefix, required): literal code points every match starts with, and the longest run
    of literal code points every match contains (case-sensitive literals only)."""
    runs, cur = [], []
    state = {"prefix": None, "broken": False}

    def close():
        if cur:
            runs.append(list(cur))
            if not state["broken"] and state["prefix"] is None:
                state["prefix"] = list(cur)
            cur.clear()
        state["broken"] = True

    def walk(items, fl):
        for op, av in items:
            name = str(op)
            if name == "LITERAL" and not fl & _I:
                cur.append(av)
            elif name == "SUBPATTERN":
                walk(av[3], (fl | av[1]) & ~av[2])
            else:
                close()

    walk(tree, flags)
    if cur:
        runs.append(list(cur))
        if not state["broken"] and state["prefix"] is None:
            state["prefix"] = list(cur)
    prefix = (state["prefix"] or [])[:MAX_LITERAL]
    required = max(runs, key=len, default=[])[:MAX_LITERAL]
    return prefix, required


def _nullable(items) -> bool:
    """Whether the parsed sequence can match the empty string."""
    for op, av in items:
        name = str(op)
        if name in ("LITERAL", "NOT_LITERAL", "ANY", "IN"):
            return False
        if name == "BRANCH":
            if not any(_nullable(alt) for alt in av[1]):
                return False
        elif name == "SUBPATTERN":
            if not _nullable(av[3]):
                return False
        elif name in ("MAX_REPEAT", "MIN_REPEAT"):
            if av[0] > 0 and not _nullable(av[2]):
                return False
    return True


def parse(pattern: str, flags: int = 0):
    if isinstance(pattern, bytes):
        raise UnsupportedPattern("bytes patterns are not supported by fastpass.regex: pass a str")
    if not isinstance(pattern, str):
        raise TypeError(f"pattern must be a str, not {type(pattern).__name__}")
    if flags & re.LOCALE:
        raise UnsupportedPattern("re.LOCALE is not supported by fastpass.regex (it applies to bytes patterns only)")
    return _p.parse(pattern, flags)  # raises re.error exactly as re.compile does


def compile_program(pattern: str, flags: int = 0) -> Program:
    tree = parse(pattern, flags)
    state = tree.state
    gflags = state.flags
    if gflags & re.LOCALE:
        raise UnsupportedPattern("(?L) / re.LOCALE is not supported by fastpass.regex")
    comp = _Compiler()
    comp.emit(SAVE, 0)
    comp.seq(tree, gflags)
    comp.emit(SAVE, 1)
    comp.emit(MATCH)
    n_groups = state.groups - 1
    instr = np.asarray(comp.instr, dtype=np.int32).reshape(-1, 4)
    pool = np.asarray(comp.pool, dtype=np.int32).reshape(-1, 2)
    first_ascii, skip_ok, empty, ascii_only = _first_ascii(instr, pool)
    pflags = (PF_SKIP_ASCII if skip_ok else 0) | (PF_FIRST_ASCII if skip_ok and ascii_only else 0)
    if not (instr[:, 0] == ASSERT).any():
        pflags |= PF_NO_ASSERT
    prefix, required = _literals(tree, gflags)
    # Jumping over a found prefix skips the threads that would start inside it: only when none
    # can (no prefix character after the first can start a match).
    if prefix and pflags == PF_SKIP_ASCII | PF_FIRST_ASCII | PF_NO_ASSERT and \
            not any(c < 128 and first_ascii[c] for c in prefix[1:]):
        pflags |= PF_PREFIX_JUMP
    bitmap = np.packbits(first_ascii, bitorder="little").view(np.uint32).astype(np.int64)
    lits = np.array([len(prefix), len(required), *prefix, *required], dtype=np.int32)
    header = np.array([MAGIC, len(instr), 2 * (n_groups + 1), comp.lookahead, len(pool),
                       pflags, HEADER, HEADER + instr.size, *bitmap.tolist(),
                       HEADER + instr.size + pool.size], dtype=np.int64).astype(np.uint32).view(np.int32)
    code = np.concatenate([header, instr.ravel(), pool.ravel(), lits]).astype(np.int32)
    return Program(code=code, n_groups=n_groups, group_index=dict(state.groupdict),
                   lookahead=comp.lookahead, first_ascii=first_ascii, can_match_empty=empty)


def _first_ascii(instr: np.ndarray, pool: np.ndarray):
    """ASCII bytes a match can start with, whether that set is usable to skip idle bytes
    (no assertion or match reachable before the first consuming instruction), and whether
    the pattern can match the empty string (used by finditer-style 'last occurrence')."""
    first = np.zeros(128, dtype=bool)
    skip_ok, can_empty, ascii_only = True, False, True
    seen, stack = set(), [0]
    while stack:
        pc = stack.pop()
        if pc in seen:
            continue
        seen.add(pc)
        op, a, b, _ = instr[pc]
        if op == JMP:
            stack.append(a)
        elif op == SPLIT:
            stack += [a, b]
        elif op == SAVE:
            stack.append(pc + 1)
        elif op == ASSERT:
            skip_ok = False
            stack.append(pc + 1)
        elif op == MATCH:
            skip_ok, can_empty = False, True
        elif op == CHAR:
            if a < 128:
                first[a] = True
            else:
                ascii_only = False
        elif op == SET:
            for lo, hi in pool[a:a + b]:
                if lo < 128:
                    first[lo:min(hi, 127) + 1] = True
                if hi >= 128:
                    ascii_only = False
        else:  # ANY / ANYNL
            first[:] = True
            ascii_only = False
    return first, skip_ok, can_empty, ascii_only
