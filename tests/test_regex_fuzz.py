"""Fixed-seed differential fuzzing of fastpass.regex against Python's re over a random corpus of
patterns (literals, classes, anchors, greedy/lazy/counted repeats, nested and empty-matching
groups, alternations with empty branches, flags, non-ASCII case folding) and strings (lone
surrogates included): zero mismatches in spans and groups, and a refusal rate under 1% with
every refusal naming its construct."""
import random
import re

import pytest

import fastpass.regex as fre
from fastpass import _backend
from fastpass.regex.batch import make_items, run
from test_regex import ReTooSlow, re_search_within

NATIVE = _backend.has_native() and hasattr(_backend.native(), "regex_batch_cpu")
N_PATTERNS = 5200  # ~5,000 compared after the few re cannot finish in time
REFERENCE_EVERY = 10  # the pure-Python tier runs on every 10th pattern (it is ~100x slower)
SEED = 20261201

CHARS = ["a", "b", "c", "A", "é", "ß", "k", "K", "1", "2", " ", r"\n", r"\.", r"\-", "_", "ı",
         "İ", "-", ",", "x", "ſ"]
CLASSES = [".", r"\d", r"\w", r"\s", r"\D", r"\W", r"\S", "[abc]", "[^a-c]", "[a-zé]", r"[\w.]",
           r"[^\s]", "[A-Z]", "[k-s]", r"[\d\-]", r"[\ud800-\udfff]", "[^x]", r"[^\d\s]"]
ANCHORS = ["^", "$", r"\A", r"\Z", r"\b", r"\B"]
QUANTS = ["*", "+", "?", "{2}", "{1,}", "{0,2}", "{1,3}", "{,2}", "{0}", "{2,}", "{0,1}", "{3}"]
GROUPS = ["(", "(", "(?:", "(?:", "(?i:", "(?s:", "(?-i:", "(?m:", "(?a:", "(?P<n{}>"]
FLAGS = [0, re.I, re.S, re.M, re.A, re.I | re.S, re.I | re.M | re.A, re.S | re.M]
ALPHABET = "abcAB1_ é\nßſKk\u212a-.,İı٣x2\udc80\ud800"
# What a refusal may name (fastpass.regex refuses only constructs it cannot run exactly).
CONSTRUCTS = ("backreference", "conditional", "atomic", "possessive", "lookahead", "lookbehind",
              "instructions", "LOCALE", "category", "bytes")


def random_pattern(rng, depth=0, names=None):
    names = names if names is not None else [0]
    return "".join(_item(rng, depth, names) for _ in range(rng.randint(1, 4)))


def _body(rng, depth, names):
    if rng.random() < 0.35:  # alternation, sometimes with empty branches
        return "|".join("" if rng.random() < 0.25 else random_pattern(rng, depth + 1, names)
                        for _ in range(rng.randint(2, 3)))
    return "" if rng.random() < 0.1 else random_pattern(rng, depth + 1, names)


def _item(rng, depth, names):
    r = rng.random()
    if depth < 3 and r < 0.35:
        g = rng.choice(GROUPS)
        if "{}" in g:
            names[0] += 1
            g = g.format(names[0])
        s = g + _body(rng, depth, names) + ")"
    elif r < 0.45:
        return rng.choice(ANCHORS)
    elif r < 0.75:
        s = rng.choice(CHARS)
    else:
        s = rng.choice(CLASSES)
    if rng.random() < 0.4:
        s += rng.choice(QUANTS) + ("?" if rng.random() < 0.3 else "")
    return s


def random_texts(rng, pattern, n=4):
    letters = "".join(c for c in pattern if c.isalnum() or c in " -,._")
    pool = ALPHABET + letters * 2
    return ["".join(rng.choice(pool) for _ in range(rng.randint(0, 14))) for _ in range(n)]


def corpus():
    rng = random.Random(SEED)
    out = []
    for i in range(N_PATTERNS):
        pattern, flags = random_pattern(rng), rng.choice(FLAGS)
        out.append((pattern, flags, random_texts(rng, pattern)))
    return out


def _want(pattern, flags, text, groups):
    m = re_search_within(pattern, text, flags)
    return None if m is None else [x for g in range(groups + 1) for x in m.span(g)]


def test_fuzz_against_re_zero_mismatches_and_few_refusals(record_property):
    patterns = refused = invalid = too_slow = 0
    refusals, mismatches = [], []
    for k, (pattern, flags, texts) in enumerate(corpus()):
        try:
            re.compile(pattern, flags)
        except re.error:
            invalid += 1
            with pytest.raises(re.error):
                fre.compile(pattern, flags)
            continue
        patterns += 1
        try:
            rx = fre.compile(pattern, flags)
        except fre.UnsupportedPattern as exc:
            refused += 1
            refusals.append((pattern, str(exc)))
            continue
        try:
            want = [_want(pattern, flags, t, rx.groups) for t in texts]
        except ReTooSlow:  # re's backtracking blew up on this one: nothing to compare with
            too_slow += 1
            continue
        got = {}
        if NATIVE:
            bm = rx.search_batch(texts, backend="cpu")  # str read in place
            got["cpu"] = [_slots(bm, i, rx.groups) for i in range(len(texts))]
            raw = run(rx.program.code, rx.n_slots, make_items(texts), backend="cpu",
                      text_as_bytes=True)  # the GPU's text path: UTF-8 ("surrogatepass") bytes
            got["cpu-bytes"] = [raw.cp_slots[i].tolist() if bool(raw.found[i]) else None
                                for i in range(len(texts))]
        if k % REFERENCE_EVERY == 0 or not NATIVE:
            got["reference"] = [_slots(rx.search_batch([t], backend="reference"), 0, rx.groups)
                                for t in texts]
        for tier, spans in got.items():
            for t, w, g in zip(texts, want, spans):
                if w != g:
                    mismatches.append((pattern, flags, t, tier, w, g))
    record_property("patterns", patterns)
    record_property("refused", refused)
    record_property("re_too_slow", too_slow)
    print(f"\nregex fuzz: {patterns} valid patterns ({invalid} invalid skipped), {refused} refused, "
          f"{too_slow} where re took over 2 s, {len(mismatches)} mismatches")
    assert patterns - refused - too_slow >= 5000  # compared with re
    assert not mismatches, mismatches[:10]
    assert refused < 0.01 * patterns, refusals[:10]
    for pattern, msg in refusals:
        assert any(c in msg for c in CONSTRUCTS), (pattern, msg)


def _slots(bm, i, groups):
    if not bool(bm.found[i]):
        return None
    return [x for g in range(groups + 1) for x in bm.span(i, g)]


def test_corpus_exercises_empty_matching_repeats():
    """The corpus is only a test of the new semantics if it holds many repeats of groups that
    can match the empty string (the construct fastpass used to refuse)."""
    from fastpass.regex._compile import _nullable, parse

    count = 0
    for pattern, flags, _ in corpus()[:1000]:
        try:
            tree = parse(pattern, flags)
        except re.error:
            continue
        count += _has_nullable_repeat(tree, _nullable)
    assert count >= 100, count


def _has_nullable_repeat(items, nullable) -> bool:
    for op, av in items:
        name = str(op)
        if name in ("MAX_REPEAT", "MIN_REPEAT"):
            lo, hi, sub = av
            if hi > lo and nullable(sub) or _has_nullable_repeat(sub, nullable):
                return True
        elif name == "SUBPATTERN" and _has_nullable_repeat(av[3], nullable):
            return True
        elif name == "BRANCH" and any(_has_nullable_repeat(a, nullable) for a in av[1]):
            return True
    return False
