"""Pattern -> Pike VM program.

Python's own parser (``re._parser``, ``sre_parse`` before 3.11) reads the pattern, so fastpass
accepts and rejects exactly the syntax ``re`` does. The parse tree is compiled to a small
program of priority-ordered instructions over code points; the sets of code points that a
class, a literal under IGNORECASE or ``\\w`` accepts are taken from ``re`` itself (see
``_charset.py``), so case folding and Unicode categories cannot drift from Python's.

Program layout (int32, shared by the Python reference VM and the C++/CUDA core):
  header [HEADER]: magic, n_instr, n_slots, lookahead, n_pool, flags, instr_off, pool_off,
                   first_ascii bitmap (4 words: ASCII bytes that can start a match), lit_off
  instr [n_instr, 4]: op, a, b, c
  pool: [lo, hi] code point pairs, sorted and disjoint (classes point into it)
  literals: prefix_len, required_len, prefix code points, required code points: every match
            starts with the prefix and contains the required literal (prefilters); then
            suffix_len, suffix, n_saves, (slot, anchor, offset) * n_saves (PF_LAZY_SPAN)
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

try:  # Python 3.11+
    from re import _constants as _c
    from re import _parser as _p
except ImportError:  # pragma: no cover - Python < 3.11
    import sre_constants as _c  # type: ignore[no-redef]
    import sre_parse as _p  # type: ignore[no-redef]

from fastpass.regex._analysis import MAX_LITERAL, lazy_span, literals
from fastpass.regex._analysis import nullable as _nullable
from fastpass.regex._charset import codepoint_ranges, esc, set_text
from fastpass.regex._errors import UnsupportedPattern

__all__ = ["UnsupportedPattern", "Program", "compile_program", "parse"]


# Opcodes (mirrored in csrc/include/fastpass/regex_vm.h).
CHAR, SET, ANY, ANYNL, SPLIT, JMP, SAVE, ASSERT, MATCH = range(9)
# Assertion kinds.
A_BEGIN_STRING, A_BEGIN_LINE, A_END_STRING, A_END_LINE, A_END_DOLLAR, A_BOUNDARY, A_NOT_BOUNDARY = range(7)
LOOKAHEAD_NEED = {A_BEGIN_STRING: 0, A_BEGIN_LINE: 0, A_END_STRING: 1, A_END_LINE: 1,
                  A_END_DOLLAR: 2, A_BOUNDARY: 1, A_NOT_BOUNDARY: 1}
MAGIC = 0x52584650  # "PFXR"
HEADER = 13
# Program flags.
PF_SKIP_ASCII = 1  # no assertion before the first consuming instruction: idle scans may skip bytes
PF_FIRST_ASCII = 2  # ... and no match starts with a non-ASCII code point: skip those too
PF_NO_ASSERT = 4  # no assertion anywhere: stable loops (like .*? before a literal) may fast-forward
PF_PREFIX_JUMP = 8  # a found literal prefix may be consumed in one move (see regex_vm.h)
PF_LAZY_SPAN = 16  # literal, lazy DOTALL dot, literal: two literal searches decide the match
MAX_INSTR = 20000

_I, _S, _M, _A, _X = re.IGNORECASE, re.DOTALL, re.MULTILINE, re.ASCII, re.VERBOSE
_UNSUPPORTED = {
    "GROUPREF": "backreference", "GROUPREF_IGNORE": "backreference",
    "GROUPREF_UNI_IGNORE": "backreference", "GROUPREF_LOC_IGNORE": "backreference",
    "GROUPREF_EXISTS": "conditional group (?(id)yes|no)", "ATOMIC_GROUP": "atomic group (?>...)",
    "POSSESSIVE_REPEAT": "possessive quantifier", "POSSESSIVE_REPEAT_ONE": "possessive quantifier",
}


@dataclass
class Program:
    code: np.ndarray            # int32 flat program (header + instr + pool)
    n_groups: int               # capturing groups (not counting group 0)
    group_index: dict           # name -> number
    lookahead: int              # code points of lookahead the assertions need (0..2)
    first_ascii: np.ndarray     # bool[128]: ASCII bytes that can start a match (PF_SKIP_ASCII)
    can_match_empty: bool


class _Compiler:
    """Parse tree -> instructions.

    Repeats whose body can match the empty string follow sre (Modules/_sre/sre_lib.h,
    MAX_UNTIL / MIN_UNTIL): the first ``min`` iterations run unchecked; after that, an
    iteration that started at the current position and comes back without consuming anything
    ends the loop (its captures are kept) and only the tail may follow. Whether "nothing was
    consumed since this iteration began" is part of the state, so such a body is compiled
    twice: an N copy (ordinary) and an E copy, used while the iteration has consumed nothing.
    The E copy holds only the body's zero-width instructions; each of its consuming
    instructions is a jump to the same instruction in the N copy (from there on the iteration is
    not empty), and its end leaves the loop. Both copies are plain Pike VM code, so every tier
    runs them unchanged and the search stays linear in the text.

    Emission functions take ``shape``: None emits N code and returns the shape (the address of
    every consuming instruction emitted, nested like the parse tree); a shape emits the E copy
    of the same subtree, jumping to those addresses."""

    def __init__(self):
        self.instr: list[list[int]] = []
        self.pool: list[tuple[int, int]] = []
        self.pool_index: dict = {}
        self.lookahead = 0

    def emit(self, op, a=0, b=0, c=0) -> int:
        self.instr.append([op, a, b, c])
        if len(self.instr) > MAX_INSTR:
            raise UnsupportedPattern(
                f"pattern compiles to more than {MAX_INSTR} instructions (a large counted "
                "repetition {m,n} of a large group, or deeply nested repeats of groups that can "
                "match the empty string): use a smaller {m,n} or fewer nested repeats")
        return len(self.instr) - 1

    def here(self) -> int:
        return len(self.instr)

    def ranges(self, rngs) -> tuple[int, int]:
        rngs = tuple(rngs)
        if rngs not in self.pool_index:
            self.pool_index[rngs] = (len(self.pool), len(rngs))
            self.pool.extend(rngs)
        return self.pool_index[rngs]

    def consume(self, shape, op, a=0, b=0) -> int:
        if shape is not None:  # E copy: continue in the N copy, which consumes
            self.emit(JMP, shape)
            return shape
        return self.emit(op, a, b)

    def consume_set(self, element: str, flags: int, shape) -> int:
        off, n = self.ranges(codepoint_ranges(element, flags & (_I | _A | _S)))
        return self.consume(shape, SET, off, n)

    def word_class(self, flags: int) -> tuple[int, int]:
        return self.ranges(codepoint_ranges(r"\w", flags & _A))

    # -- tree walk ---------------------------------------------------------------------
    def seq(self, items, flags: int, shape=None):
        if shape is None:
            return [self.node(str(op), av, flags) for op, av in items]
        for (op, av), sh in zip(items, shape):
            self.node(str(op), av, flags, sh)
            if not _nullable([(op, av)]):
                break  # the E copy ends at the first item that must consume
        return shape

    def node(self, name: str, av, flags: int, shape=None):
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
                return self.consume_set(esc(av), flags, shape)
            return self.consume(shape, CHAR, av)
        if name == "NOT_LITERAL":
            return self.consume_set(f"[^{esc(av)}]", flags, shape)
        if name == "ANY":
            return self.consume(shape, ANY if flags & _S else ANYNL)
        if name == "IN":
            return self.consume_set(set_text(av), flags, shape)
        if name == "BRANCH":
            return self.branch(av[1], flags, shape)
        if name == "SUBPATTERN":
            group, add, remove, sub = av
            inner = (flags | add) & ~remove
            if group is not None:
                self.emit(SAVE, 2 * group)
            out = self.seq(sub, inner, shape)
            if group is not None:
                self.emit(SAVE, 2 * group + 1)
            return out
        if name in ("MAX_REPEAT", "MIN_REPEAT"):
            return self.repeat(av, flags, name == "MAX_REPEAT", shape)
        if name == "AT":
            return self.at(str(av), flags)
        raise UnsupportedPattern(f"regex construct {name} is not supported by fastpass.regex")

    def branch(self, alts, flags: int, shape=None):
        jumps, shapes = [], []
        for i, alt in enumerate(alts):
            sh = None if shape is None else shape[i]
            if i < len(alts) - 1:
                split = self.emit(SPLIT, self.here() + 1)
                shapes.append(self.seq(alt, flags, sh))
                jumps.append(self.emit(JMP))
                self.instr[split][2] = self.here()
            else:
                shapes.append(self.seq(alt, flags, sh))
        for j in jumps:
            self.instr[j][1] = self.here()
        return shapes

    def repeat(self, av, flags: int, greedy: bool, shape=None):
        lo, hi, sub = av
        unbounded = hi == _c.MAXREPEAT
        optional = 1 if unbounded else hi - lo  # loop bodies (unbounded) / optional copies
        nullable = _nullable(sub)
        if shape is not None:
            return self._repeat_empty_so_far(lo, optional, sub, flags, greedy, nullable, shape)
        shapes = [self.seq(sub, flags) for _ in range(lo)]  # sre checks no minimum iteration
        if unbounded:
            head = self.emit(SPLIT)
            if nullable:
                shapes.append(self.seq(sub, flags))  # N copy: entered from the E copy only
                self.emit(JMP, head)
                body = self.here()
                self.seq(sub, flags, shapes[-1])
                leave = self.emit(JMP)
            else:  # every iteration consumes: the plain loop is sre's
                body = self.here()
                shapes.append(self.seq(sub, flags))
                self.emit(JMP, head)
                leave = None
            self._split_to(head, body, self.here(), greedy)
            if leave is not None:
                self.instr[leave][1] = self.here()
            return shapes
        splits, to_next, leaves = [], [], []
        for k in range(optional):
            split = self.emit(SPLIT)
            if nullable and k < optional - 1:  # (the last copy ends the loop either way)
                shapes.append(self.seq(sub, flags))
                to_next.append(self.emit(JMP))
                body = self.here()
                self.seq(sub, flags, shapes[-1])
                leaves.append(self.emit(JMP))
            else:
                body = self.here()
                shapes.append(self.seq(sub, flags))
            splits.append((split, body))
        exit_ = self.here()
        for (split, body) in splits:
            self._split_to(split, body, exit_, greedy)
        for k, j in enumerate(to_next):
            self.instr[j][1] = splits[k + 1][0]
        for j in leaves:
            self.instr[j][1] = exit_
        return shapes

    def _repeat_empty_so_far(self, lo, optional, sub, flags, greedy, nullable, shape):
        """E copy of a repeat: entered at the position where the enclosing empty iteration
        began, so its own first optional iteration starts there too and, if it consumes
        nothing, ends the loop; later optional iterations are reached only through the N copy."""
        for i in range(lo):
            self.seq(sub, flags, shape[i])
            if not nullable:
                return shape
        if optional > 0:
            split = self.emit(SPLIT)
            body = self.here()
            self.seq(sub, flags, shape[lo])
            leave = self.emit(JMP)
            self._split_to(split, body, self.here(), greedy)
            self.instr[leave][1] = self.here()
        return shape

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
        return None


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
    prefix, required = literals(tree, gflags)
    # Jumping over a found prefix skips the threads that would start inside it: only when none
    # can (no prefix character after the first can start a match).
    if prefix and pflags == PF_SKIP_ASCII | PF_FIRST_ASCII | PF_NO_ASSERT and \
            not any(c < 128 and first_ascii[c] for c in prefix[1:]):
        pflags |= PF_PREFIX_JUMP
    bitmap = np.packbits(first_ascii, bitorder="little").view(np.uint32).astype(np.int64)
    span = lazy_span(tree, gflags)
    if span is not None and span[0] == prefix:
        pflags |= PF_LAZY_SPAN
    suffix, saves = (span[1], span[2]) if pflags & PF_LAZY_SPAN else ([], [])
    lits = np.array([len(prefix), len(required), *prefix, *required, len(suffix), *suffix,
                     len(saves), *[x for s in saves for x in s]], dtype=np.int32)
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
