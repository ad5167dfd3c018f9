"""fastpass.regex against Python's re: differential (hypothesis), CPython's re_tests table,
hand-picked semantics, unsupported constructs, linear time."""
import re
import signal
import time

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import fastpass.regex as fre
from fastpass import _backend
from fastpass.regex.batch import make_items, run
from fastpass.regex.tokens import from_bytes

TIERS = ["reference"] + (["cpu"] if _backend.has_native() and hasattr(_backend.native(), "regex_batch_cpu") else [])


def spans(m, groups):
    return None if m is None else [m.span(g) for g in range(groups + 1)]


class ReTooSlow(Exception):
    """Python's re backtracked past the time limit (it is exponential on some random patterns;
    fastpass is linear): the case cannot be compared."""


def re_search_within(pattern, text, flags=0, seconds=2.0):
    def alarm(signum, frame):
        raise ReTooSlow(pattern)

    old = signal.signal(signal.SIGALRM, alarm)  # sre checks for signals while it backtracks
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return re.search(pattern, text, flags)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def check_same_as_re(pattern, text, flags=0, tiers=TIERS):
    want = re_search_within(pattern, text, flags)
    rx = fre.compile(pattern, flags)
    for tier in tiers:
        got = rx.search(text, backend=tier)
        assert spans(got, rx.groups) == spans(want, rx.groups), (pattern, text, flags, tier)
        if got is not None:
            assert got.groups() == want.groups()
            assert got.group() == want.group()


# ---- hand-picked semantics ----------------------------------------------------------------------
CASES = [
    (r"<answer>(.*?)</answer>", re.S, "x <answer> 42 </answer> <answer>7</answer>"),
    (r"<answer>(.*?)</answer>", 0, "<answer>a\nb</answer><answer>c</answer>"),
    (r"(a|ab)(c|bcd)(d*)", 0, "abcd"),
    (r"\bfoo\b", 0, "a foo b"), (r"\Bo\B", 0, "foo"), (r"\b", 0, ""), (r"\B", 0, ""),
    (r"a$", 0, "a\n"), (r"a$", 0, "a\n\n"), (r"a$", re.M, "a\nb"), (r"^b", re.M, "a\nb"),
    (r"a\Z", 0, "a\n"), (r"\Aa", 0, "ba"), (r"$", 0, "ab\n"), (r"^$", re.M, "a\n\nb"),
    (r"(?i)straße", 0, "STRASSE strasse STRAßE"), (r"(?i)[a-z]+", 0, "ÀbcKſ"),
    (r"(?i)k", 0, "\u212a"), (r"(?i)ǅ", 0, "ǆ"), (r"(?ia)[a-z]+", 0, "\u212aK"),
    (r"\w+", 0, "héllo wörld"), (r"\w+", re.A, "héllo"), (r"\d+", 0, "x٣٤5"), (r"\s+", 0, "a\u3000\x1cb"),
    (r"x*", 0, "aaa"), (r"(?:(a)|b)*", 0, "ab"), (r"(a)|b", 0, "b"), (r"(a)?b", 0, "b"),
    (r"#### (\-?[0-9\.\,]+)", 0, "so #### -1,000.5"), (r"a{2,3}?", 0, "aaaa"), (r"a{2,}", 0, "aaaaa"),
    (r"(?x) a b # c", 0, "ab"), (r"(?P<x>a)(?P<y>b)?", 0, "ac"), (r"(?s:.)(.)", 0, "\n\nx"),
    (r"[^\W\d]+", 0, "12ab_é3"), (r"[\s\S]{3}", 0, "a\nb"), (r".", 0, "\n"), (r"", 0, "abc"),
    (r"(?:ab)+?c", 0, "ababc"), (r"(a+)+b", 0, "aaab"), (r"😀+(.)", 0, "x😀😀é"),
    # fast paths: literal prefix jump, stable .*? fast-forward, literal run to the match
    (r"<a>(.*?)</a>", re.S, "x<a> y </ <a </a> z"), (r"<a>(.*?)</a>", re.S, "<a><a></a>"),
    (r"a(.*?)bc", 0, "a\nxbc abc"), (r"x(.*?)yz|x", 0, "x..yz"), (r"(?s)a.*?(b)c", 0, "a bbc"),
    (r"<a>(.*)</a>", re.S, "<a>1</a>2</a>"), (r"ab(.*?)é(ü)", 0, "abxxéé ü éü"),
    # repeats of groups that can match the empty string (sre: an optional iteration that
    # consumes nothing ends the loop and keeps its captures)
    (r"(a?)*", 0, "aa"), (r"(|a)*", 0, "aa"), (r"(a|)+", 0, "b"), (r"(|a){0,2}(b)", 0, "ab"),
    (r"(?:)*", 0, "x"), (r"(a|){0,2}", 0, "aa"), (r"(?:(a)|b|())*", 0, "ab"), (r"(a*)+", 0, "b"),
    (r"(a*)*?x", 0, "aax"), (r"(?:(a)|())*?b", 0, "aab"), (r"(?:\s*)?", 0, " x"),
    (r"(-?\d*)?", 0, "-12"), (r"(,\s*)*", 0, ", ,x"), (r"(?:(\b))?", 0, "ab"),
    (r"((a)|(b)|)*c", 0, "abac"), (r"(?:(a*)(b*))*", 0, "abba"), (r"(a|b?)*?c", 0, "abc"),
    (r"((?:a|)*)*b", 0, "aab"), (r"(?:(a)|\b)*", 0, "a a"), (r"(a?){2,4}", 0, "a"),
    (r"(a?){2,4}?b", 0, "aab"), (r"(?:(x)|(y)?)+z", 0, "xyz"), (r"((a?)(b?))*", 0, "ab"),
    # lone surrogates are code points like any other
    (r"[^a]", 0, "\udc80"), (r"\S\D\W", 0, "x\udc80\ud800\udfff"), (r"[\ud800-\udfff]+", 0, "a\ud800\udc80b"),
    (r"(?i)\udc80", 0, "\udc80"), (r"x(.)y", 0, "x\udc80y"),
]


@pytest.mark.parametrize("pattern,flags,text", CASES)
def test_hand_picked(pattern, flags, text):
    check_same_as_re(pattern, text, flags)


def test_match_object_api():
    m = fre.compile(r"(?P<k>\w+)=(\d+)?").search("  ключ=")
    want = re.search(r"(?P<k>\w+)=(\d+)?", "  ключ=")
    assert m.span() == want.span() and m.start(1) == want.start(1) and m.end("k") == want.end("k")
    assert m.groups() == want.groups() and m.groups("-") == want.groups("-")
    assert m.groupdict() == want.groupdict() and m["k"] == want["k"]
    assert fre.compile("z").search("abc") is None


@pytest.mark.parametrize("pattern,construct", [
    (r"(a)\1", "backreference"), (r"a(?=b)", "lookahead"), (r"a(?!b)", "lookahead"),
    (r"(?<=a)b", "lookbehind"), (r"(?<!a)b", "lookbehind"), (r"(a)?(?(1)b|c)", "conditional"),
    (r"(?>a+)b", "atomic"), (r"a++", "possessive"), (r"a*+", "possessive"),
    (r"((((a|){0,30}){0,30}){0,30})", "instructions"),
])
def test_unsupported_constructs_are_named(pattern, construct):
    with pytest.raises(fre.UnsupportedPattern, match=construct):
        fre.compile(pattern)
    assert issubclass(fre.UnsupportedPattern, ValueError)


@pytest.mark.parametrize("pattern", ["(", "a{2,1}", "[z-a]", "(?P<1>a)", "*", "(?i", "a)"])
def test_invalid_syntax_raises_re_error(pattern):
    with pytest.raises(re.error):
        re.compile(pattern)
    with pytest.raises(re.error):
        fre.compile(pattern)


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("pattern", [r"(a+)+b", r"((?:a|)*)*b", r"(a?){0,20}(a*)*?(|a)+b"])
def test_pathological_pattern_is_linear(tier, pattern):
    # Exponential for a backtracking engine (re gives up only with the text: these would not
    # finish); linear here, nullable repeats included.
    rx = fre.compile(pattern)
    text = "a" * (20000 if tier != "reference" else 2000)  # the pure-Python VM is ~100x slower
    t0 = time.perf_counter()
    assert rx.search(text, backend=tier) is None
    assert time.perf_counter() - t0 < 5.0
    m, want = rx.search(text + "b", backend=tier), re.search(pattern, text + "b")
    assert [m.span(g) for g in range(rx.groups + 1)] == [want.span(g) for g in range(rx.groups + 1)]


# ---- CPython's own table ------------------------------------------------------------------------
def _re_tests():
    try:
        from test import re_tests
    except ImportError:  # the test package is not installed with every Python
        return None
    return re_tests


@pytest.mark.skipif(_re_tests() is None, reason="CPython's test.re_tests is not installed")
def test_cpython_re_tests_supported_subset():
    rt = _re_tests()
    ran = unsupported = 0
    for entry in rt.tests:
        pattern, text, outcome = entry[:3]
        if not isinstance(pattern, str) or not isinstance(text, str):
            continue
        if outcome == rt.SYNTAX_ERROR:
            with pytest.raises(re.error):
                fre.compile(pattern)
            ran += 1
            continue
        try:
            rx = fre.compile(pattern)
        except fre.UnsupportedPattern:
            unsupported += 1
            continue
        want = re.search(pattern, text)
        for tier in TIERS:
            got = rx.search(text, backend=tier)
            assert spans(got, rx.groups) == spans(want, rx.groups), (pattern, text, tier)
        ran += 1
    assert ran > 250, (ran, unsupported)


# ---- differential testing with hypothesis -------------------------------------------------------
ALPHABET = "abcAB1_ é\nßſKk\u212a-.İı٣\udc80\ud800"
CHAR_ATOMS = ["a", "b", "c", "A", "é", "ß", "k", "K", "1", " ", r"\n", r"\.", r"\-", "_", "ı", "İ"]
CLASS_ATOMS = [".", r"\d", r"\w", r"\s", r"\D", r"\W", r"\S", "[abc]", "[^a-c]", "[a-zé]",
               r"[\w.]", r"[^\s]", "[A-Z]", "[k-s]", r"[\d\-]", r"[\ud800-\udfff]", r"[^\d\s]"]
ANCHORS = ["^", "$", r"\A", r"\Z", r"\b", r"\B"]
QUANTS = ["*", "+", "?", "{2}", "{1,}", "{0,2}", "{1,3}", "{,2}", "{0}", "{2,}"]


def _patterns():
    atom = st.sampled_from(CHAR_ATOMS + CLASS_ATOMS)
    anchor = st.sampled_from(ANCHORS)

    def extend(inner):
        seq = st.lists(inner, min_size=1, max_size=4).map("".join)
        maybe_empty = st.one_of(st.just(""), seq)  # groups and branches that can match ""
        group = st.tuples(st.sampled_from(["(", "(?:", "(?i:", "(?s:", "(?-i:", "(?m:", "(?a:"]),
                          maybe_empty).map(lambda t: f"{t[0]}{t[1]})")
        alt = st.lists(maybe_empty, min_size=2, max_size=3).map(lambda xs: "(" + "|".join(xs) + ")")
        rep = st.tuples(st.one_of(atom, group, alt), st.sampled_from(QUANTS),
                        st.booleans()).map(lambda t: t[0] + t[1] + ("?" if t[2] else ""))
        return st.one_of(atom, anchor, group, alt, rep)

    return st.recursive(st.one_of(atom, anchor), extend, max_leaves=8)


FLAG_SETS = [0, re.I, re.S, re.M, re.A, re.I | re.S, re.I | re.M | re.A, re.S | re.M]


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(pattern=st.lists(_patterns(), min_size=1, max_size=3).map("".join),
       text=st.text(alphabet=ALPHABET, max_size=12), flags=st.sampled_from(FLAG_SETS))
def test_differential_against_re(pattern, text, flags):
    try:
        re.compile(pattern, flags)
    except re.error:
        with pytest.raises(re.error):
            fre.compile(pattern, flags)
        return
    try:
        fre.compile(pattern, flags)
    except fre.UnsupportedPattern as exc:
        assert "instructions" in str(exc)  # the only refusal the grammar can trigger
        assume(False)
    try:
        check_same_as_re(pattern, text, flags)
    except ReTooSlow:
        assume(False)


BYTE_TABLE = from_bytes([bytes([b]) for b in range(256)])


@pytest.mark.skipif("cpu" not in TIERS, reason="fastpass._C with regex kernels is not built")
@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(pattern=st.lists(_patterns(), min_size=1, max_size=3).map("".join),
       texts=st.lists(st.text(alphabet=ALPHABET, max_size=12), min_size=1, max_size=4),
       cut=st.integers(0, 3), flags=st.sampled_from(FLAG_SETS))
def test_differential_bytes_and_token_sources(pattern, texts, cut, flags):
    """The UTF-8 byte source (the GPU's text path) and the token source (ids -> bytes, with a
    multi-byte character split or cut short) give re's answer on the decoded text."""
    try:
        rx = fre.compile(pattern, flags)
    except (re.error, fre.UnsupportedPattern):
        assume(False)
    raw = run(rx.program.code, rx.n_slots, make_items(texts), backend="cpu", text_as_bytes=True)
    try:
        wants = [re_search_within(pattern, t, flags) for t in texts]
    except ReTooSlow:
        assume(False)
    for i, text in enumerate(texts):
        want = wants[i]
        got = raw.cp_slots[i].tolist() if bool(raw.found[i]) else None
        assert got == (None if want is None else [x for g in range(rx.groups + 1) for x in want.span(g)])
    # Token bytes decode like bytes.decode("utf-8", "replace"): a lone surrogate's
    # "surrogatepass" bytes are three ill-formed bytes there, three U+FFFD.
    data = [list(t.encode("utf-8", "surrogatepass")) for t in texts]
    data = [d[:len(d) - cut] if len(d) > cut else d for d in data]  # may end inside a character
    width = max(1, max(len(d) for d in data))
    ids = torch.full((len(data), width), -1, dtype=torch.int64)
    for i, d in enumerate(data):
        ids[i, :len(d)] = torch.tensor(d, dtype=torch.int64)
    bm = rx.search_batch(ids, token_bytes=BYTE_TABLE, backend="cpu")
    for i, d in enumerate(data):
        text = bytes(d).decode("utf-8", "replace")
        try:
            want = re_search_within(pattern, text, flags)
        except ReTooSlow:
            continue
        assert bool(bm.found[i]) == (want is not None), (pattern, text)
        if want is not None:
            assert [bm.span(i, g) for g in range(rx.groups + 1)] == [want.span(g) for g in range(rx.groups + 1)]


def test_compile_is_cached_and_rejects_non_str_patterns():
    a = fre.compile(r"<answer>(.*?)</answer>", re.DOTALL)
    assert fre.compile(r"<answer>(.*?)</answer>", re.DOTALL) is a
    pat = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
    assert fre.compile(pat) is fre.compile(pat) and fre.compile(pat).flags == pat.flags
    assert fre.compile(r"<answer>(.*?)</answer>") is not a
    with pytest.raises(TypeError, match="pattern must be a str"):
        fre.compile(b"abc")
