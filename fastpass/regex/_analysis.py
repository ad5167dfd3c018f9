"""What the parse tree says about every match, for the kernels' shortcuts: the literal prefix
and a required literal (prefilters), whether a sequence can match the empty string, and the
"literal, lazy dot, literal" shape that two literal searches decide on their own."""
from __future__ import annotations

import re

try:  # Python 3.11+
    from re import _constants as _c
except ImportError:  # pragma: no cover - Python < 3.11
    import sre_constants as _c  # type: ignore[no-redef]

MAX_LITERAL = 32
_I, _S = re.IGNORECASE, re.DOTALL


def literals(tree, flags: int):
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


def nullable(items) -> bool:
    """Whether the parsed sequence can match the empty string."""
    for op, av in items:
        name = str(op)
        if name in ("LITERAL", "NOT_LITERAL", "ANY", "IN"):
            return False
        if name == "BRANCH":
            if not any(nullable(alt) for alt in av[1]):
                return False
        elif name == "SUBPATTERN":
            if not nullable(av[3]):
                return False
        elif name in ("MAX_REPEAT", "MIN_REPEAT"):
            if av[0] > 0 and not nullable(av[2]):
                return False
    return True



def lazy_span(tree, flags: int):
    """(prefix, suffix, saves) when the pattern is a literal, a lazy DOTALL ``.*?`` and a
    literal (like ``<answer>(.*?)</answer>``, DOTALL), possibly with groups around any of them
    and only ASCII case-sensitive literals; else None.

    Leftmost-first, such a pattern matches from the first occurrence i of the prefix to the
    first occurrence j of the suffix at or after i + len(prefix): if no suffix follows the first
    prefix, none follows any later one, so there is no match. saves: (slot, anchor, offset), the
    slot at i + offset (anchor 0) or at j + offset (anchor 1)."""
    parts = {"pre": [], "suf": [], "saves": [(0, 0, 0)], "lazy": False}

    def walk(items, fl) -> bool:
        for op, av in items:
            name = str(op)
            side = "suf" if parts["lazy"] else "pre"
            if name == "LITERAL":
                if fl & _I or av >= 128:
                    return False
                parts[side].append(av)
            elif name == "SUBPATTERN":
                group, add, remove, sub = av
                inner = (fl | add) & ~remove
                if group is not None:
                    parts["saves"].append((2 * group, int(parts["lazy"]), len(parts[side])))
                if not walk(sub, inner):
                    return False
                side = "suf" if parts["lazy"] else "pre"
                if group is not None:
                    parts["saves"].append((2 * group + 1, int(parts["lazy"]), len(parts[side])))
            elif name == "MIN_REPEAT" and not parts["lazy"] and av[0] == 0 and \
                    av[1] == _c.MAXREPEAT and len(av[2]) == 1 and str(av[2][0][0]) == "ANY" and fl & _S:
                parts["lazy"] = True
            else:
                return False
        return True

    if not walk(tree, flags) or not parts["lazy"]:
        return None
    pre, suf = parts["pre"], parts["suf"]
    if not pre or not suf or len(pre) > MAX_LITERAL or len(suf) > MAX_LITERAL:
        return None
    return pre, suf, parts["saves"] + [(1, 1, len(suf))]
