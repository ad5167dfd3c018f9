"""Reference Pike VM in plain Python (the "reference" tier).

The same algorithm as csrc/include/fastpass/regex_vm.h, over a list of code points: threads are
kept in priority order, each carrying capture slots; a thread reaching MATCH records the match
and cuts every lower-priority thread, which gives Python's leftmost-first answer in
O(len(text) * len(program)) time."""
from __future__ import annotations

from bisect import bisect_right

import numpy as np

from fastpass.regex._compile import (A_BEGIN_LINE, A_BEGIN_STRING, A_BOUNDARY, A_END_DOLLAR,
                                     A_END_LINE, A_END_STRING, ANY, ANYNL, ASSERT, CHAR, HEADER,
                                     JMP, MATCH, SAVE, SET, SPLIT)

END = -1
NEWLINE = 10


class _Prog:
    def __init__(self, code: np.ndarray):
        n_instr, self.n_slots, self.lookahead = int(code[1]), int(code[2]), int(code[3])
        self.instr = [tuple(int(x) for x in row) for row in code[HEADER:HEADER + 4 * n_instr].reshape(-1, 4)]
        pool = code[int(code[7]):int(code[7]) + 2 * int(code[4])].reshape(-1, 2)
        self.sets: dict = {}
        for op, a, b, c in self.instr:
            if op == SET:
                self.sets[(a, b)] = self._ranges(pool, a, b)
            elif op == ASSERT and c:
                self.sets[(b, c)] = self._ranges(pool, b, c)

    @staticmethod
    def _ranges(pool, off, n):
        lo = [int(x) for x in pool[off:off + n, 0]]
        hi = [int(x) for x in pool[off:off + n, 1]]
        return lo, hi


def in_ranges(ranges, cp: int) -> bool:
    lo, hi = ranges
    i = bisect_right(lo, cp) - 1
    return i >= 0 and cp <= hi[i]


def _is_word(prog, key, cp) -> bool:
    return cp != END and in_ranges(prog.sets[key], cp)


def _assert_ok(prog, kind, key, p, n, prev, nxt):
    if kind == A_BEGIN_STRING:
        return p == 0
    if kind == A_BEGIN_LINE:
        return prev == END or prev == NEWLINE
    if kind == A_END_STRING:
        return nxt == END
    if kind == A_END_LINE:
        return nxt == END or nxt == NEWLINE
    if kind == A_END_DOLLAR:
        return nxt == END or (nxt == NEWLINE and p + 1 == n)
    if prev == END and nxt == END:  # sre: neither \b nor \B matches in an empty string
        return False
    boundary = _is_word(prog, key, prev) != _is_word(prog, key, nxt)
    return boundary if kind == A_BOUNDARY else not boundary


def _add(prog, lst, seen, pc, slots, p, n, prev, nxt):
    """Follow epsilon edges from pc at position p, appending consuming threads in priority order."""
    stack = [(pc, slots)]
    while stack:
        pc, slots = stack.pop()
        while pc not in seen:
            seen.add(pc)
            op, a, b, c = prog.instr[pc]
            if op == JMP:
                pc = a
            elif op == SPLIT:
                stack.append((b, slots))
                pc = a
            elif op == SAVE:
                slots = slots[:a] + (p,) + slots[a + 1:]
                pc += 1
            elif op == ASSERT:
                if not _assert_ok(prog, a, (b, c), p, n, prev, nxt):
                    break
                pc += 1
            else:
                lst.append((pc, slots))
                break


def search_codepoints(code: np.ndarray, cps, start: int = 0):
    """Leftmost-first match of the program in ``cps`` (a sequence of code points), trying start
    positions >= ``start``; returns the capture slots (tuple, -1 = unset) or None."""
    prog = code if isinstance(code, _Prog) else _Prog(code)
    n = len(cps)
    empty = (-1,) * prog.n_slots
    clist: list = []
    matched = None
    for p in range(start, n + 1):
        prev = cps[p - 1] if p > 0 else END
        nxt = cps[p] if p < n else END
        if matched is None:
            seen = {pc for pc, _ in clist}
            _add(prog, clist, seen, 0, empty, p, n, prev, nxt)
        if not clist:
            if matched is not None:
                break
            continue
        nlist: list = []
        seen = set()
        nprev, nnxt = nxt, (cps[p + 1] if p + 1 < n else END)
        for pc, slots in clist:
            op, a, b, _ = prog.instr[pc]
            if op == MATCH:
                matched = slots
                break  # lower-priority threads lose to this match
            if p == n:
                continue
            c = nxt
            if (op == CHAR and c == a) or op == ANY or (op == ANYNL and c != NEWLINE) or \
                    (op == SET and in_ranges(prog.sets[(a, b)], c)):
                _add(prog, nlist, seen, pc + 1, slots, p + 1, n, nprev, nnxt)
        clist = nlist
    return matched


def compile_reference(code: np.ndarray) -> _Prog:
    return _Prog(code)


def stream_final(code, cps) -> bool:
    """Whether the match on the text so far is final (a match recorded and no higher-priority
    thread alive) without knowing where the text ends: only the steps whose lookahead is known
    run, then a match reached by the last of them is settled, as the streaming kernels do."""
    prog = code if isinstance(code, _Prog) else _Prog(code)
    lookahead = prog.lookahead
    n = len(cps)
    clist: list = []
    matched = None
    for p in range(max(0, n - lookahead)):
        prev = cps[p - 1] if p > 0 else END
        nxt = cps[p]
        if matched is None:
            _add(prog, clist, {pc for pc, _ in clist}, 0, (-1,) * prog.n_slots, p, n, prev, nxt)
        nlist: list = []
        seen = set()
        nnxt = cps[p + 1] if p + 1 < n else END
        for pc, slots in clist:
            op, a, b, _ = prog.instr[pc]
            if op == MATCH:
                matched = slots
                break
            if (op == CHAR and nxt == a) or op == ANY or (op == ANYNL and nxt != NEWLINE) or \
                    (op == SET and in_ranges(prog.sets[(a, b)], nxt)):
                _add(prog, nlist, seen, pc + 1, slots, p + 1, n, nxt, nnxt)
        clist = nlist
        if matched is not None and not clist:
            return True
    for i, (pc, slots) in enumerate(clist):
        if prog.instr[pc][0] == MATCH:
            return i == 0
    return False
