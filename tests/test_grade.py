"""fp.grade: normalisers on edge cases, presets, kernel grading == host reference."""
import random
import re
from fractions import Fraction

import numpy as np
import pytest
import torch

import fastpass as fp
from fastpass import _backend
from fastpass.grading import grade_text, last_boxed, math_key, numeric_key
from fastpass.regex.tokens import from_bytes

NATIVE = _backend.has_native() and hasattr(_backend.native(), "regex_batch_cpu")
TIERS = ["reference"] + (["cpu"] if NATIVE else [])
BYTE_TABLE = from_bytes([bytes([b]) for b in range(256)])


@pytest.mark.parametrize("a,b,equal", [
    ("42", "42.0", True), ("1,000", "1000", True), ("$1,000.", "1000", True), ("-0", "0", True),
    ("0.50", ".5", True), ("+3", "3", True), ("007", "7", True), (" 42 ", "42", True),
    ("42", "43", False), ("-1", "1", False), ("4 2", "42", False), ("abc", "abc", True),
    ("1.5.", "1.5", True), ("1e3", "1000", False), ("\u300042\u3000", "42", True), (".", "0", False),
])
def test_numeric_key(a, b, equal):
    assert (numeric_key(a) == numeric_key(b)) is equal


def test_last_boxed_scanner():
    assert last_boxed(r"\boxed{1} then \boxed{\frac{1}{2}}") == r"\frac{1}{2}"
    assert last_boxed(r"\boxed{7} and \boxed{unclosed") == "7"
    assert last_boxed(r"\boxed{a{b}c}") == "a{b}c"
    assert last_boxed("no box") is None
    assert last_boxed(r"\boxed{}") == ""


@pytest.mark.parametrize("a,b", [(r"\frac{1}{2}", "0.5"), (r"\dfrac12", "1/2"), (r"90^\circ", "90"),
                                 (r"10\text{ cm}", "10"), (r"\left(3\right)", "(3)"), ("$5$", "5"),
                                 (r"\boxed{12}", "12"), ("1,234", "1234")])
def test_math_key_equal(a, b):
    assert math_key(a) == math_key(b)


def test_math_key_different():
    assert math_key(r"\frac{1}{3}") != math_key("0.33")
    assert not grade_text("x+1", "x+2", "math")


@pytest.mark.parametrize("tier", TIERS)
def test_r1_preset_is_the_seed_rule(tier):
    comps = ["<answer> 42 </answer>", "<answer>41</answer>", "no tags", "<answer>\n42\n</answer><answer>7</answer>",
             "<answer>42</answer", "<answer>４２</answer>", "<answer>\u300042</answer>"]
    golds = ["42"] * len(comps)
    seed = [bool((m := re.search(r"<answer>(.*?)</answer>", c, re.DOTALL)) and m.group(1).strip() == g)
            for c, g in zip(comps, golds)]
    got = fp.grade(comps, golds, backend=tier)
    assert got.dtype == torch.bool and got.tolist() == seed


@pytest.mark.parametrize("tier", TIERS)
def test_presets(tier):
    gsm = ["so #### 1,000", "The answer is $72.", "#### -3.50", "nothing here", "#### 5 and The answer is 6"]
    assert fp.grade(gsm, ["1000", "72", "-3.5", "1", "6"], fp.GSM8K_ANSWER, backend=tier).tolist() == \
        [True, True, True, False, False]
    boxed = [r"so \boxed{\frac{1}{2}}", r"\boxed{3} wait \boxed{ 4 }", r"\boxed{5", "5"]
    assert fp.grade(boxed, [r"\frac{1}{2}", "4", "5", "5"], fp.BOXED, backend=tier).tolist() == \
        [True, True, False, False]
    last = ["1 then 2, finally 3,000.", "-7", "x", "1.5 and 2.50"]
    assert fp.grade(last, ["3000", "-7", "0", "2.5"], fp.LAST_NUMBER, backend=tier).tolist() == \
        [True, True, False, True]
    assert fp.grade([r"<answer>\frac{2}{4}</answer>"], ["0.5"], normalize="math", backend=tier).tolist() == [True]


@pytest.mark.parametrize("tier", TIERS)
def test_occurrence_and_overrides(tier):
    comps = ["<answer>1</answer> <answer>2</answer>"]
    assert fp.grade(comps, ["1"], backend=tier).tolist() == [True]
    assert fp.grade(comps, ["2"], occurrence="last", backend=tier).tolist() == [True]
    assert fp.grade(["a=5"], ["a=5"], pattern=r"(\w)=(\d)", group=0, normalize="exact", backend=tier).tolist() == [True]
    assert fp.grade(["k: 5"], ["5"], pattern=fp.regex.compile(r"K: (\d)", re.I), backend=tier).tolist() == [True]


WS = [" ", "\t", "\n", "\u3000", "\x1c", "\xa0", "\u200b"]  # \u200b is not whitespace in Python
PIECES = ["42", "4", "2", ".", ",", "$", "-", "0", "é", "x", r"\boxed{", "}", "{"] + WS


def _random_answer(rng):
    return "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 7)))


@pytest.mark.parametrize("normalize", ["exact", "strip", "numeric", "boxed"])
def test_kernel_grading_equals_reference(normalize):
    rng = random.Random(normalize)
    inner = [_random_answer(rng) for _ in range(300)]
    golds = [rng.choice([a, _random_answer(rng), "42", "0", r"4"]) for a in inner]
    answers = inner if normalize != "boxed" else \
        [rng.choice(["", "x ", _random_answer(rng)]) + "\\boxed{" + a + "}" + rng.choice(["", "}", "{"])
         for a in inner]
    comps = [f"<answer>{a}</answer>" for a in answers]
    want = [grade_text(a, g, normalize) for a, g in zip(answers, golds)]
    assert sum(want) >= 20  # the generator makes enough equal pairs to be a real test
    for tier in TIERS:
        assert fp.grade(comps, golds, normalize=normalize, backend=tier).tolist() == want, tier
    ids = [torch.tensor(list(c.encode())) for c in comps]
    width = max(len(i) for i in ids)
    padded = torch.stack([torch.nn.functional.pad(i, (0, width - len(i)), value=-1) for i in ids])
    for tier in TIERS:
        got = fp.grade(padded, golds, normalize=normalize, token_bytes=BYTE_TABLE, backend=tier)
        assert got.tolist() == want, tier


@pytest.mark.skipif(not NATIVE, reason="fastpass._C with regex kernels is not built")
@pytest.mark.parametrize("normalize", ["exact", "strip", "numeric", "boxed"])
def test_kernel_grading_on_utf8_bytes(normalize):
    # The GPU's text path (items and gold keys as UTF-8 bytes), run by the CPU tier.
    from fastpass.grading import _gold_keys
    from fastpass.regex.batch import make_items, run

    rng = random.Random(normalize + "bytes")
    answers = [_random_answer(rng) for _ in range(200)]
    if normalize == "boxed":
        answers = ["\\boxed{" + a + "}" for a in answers]
    golds = [rng.choice([a, "42", "0", a.replace("\\boxed{", "")[:-1]]) for a in answers]
    comps = [f"é <answer>{a}</answer>" for a in answers]
    rx = fp.regex.compile(fp.R1_ANSWER.pattern, fp.R1_ANSWER.flags)
    raw = run(rx.program.code, rx.n_slots, make_items(comps), grade=(1, normalize, *_gold_keys(golds, normalize)),
              backend="cpu", offsets=(), text_as_bytes=True)
    assert (raw.grade > 0).tolist() == [grade_text(a, g, normalize) for a, g in zip(answers, golds)]


@pytest.mark.parametrize("tier", TIERS)
def test_strip_golds_are_stripped_by_the_grader(tier):
    """Golds go to the kernels unstripped; the comparison ignores their str.strip() whitespace only."""
    answers = ["42", " 4 2 ", "", "\u3000x\u3000", "x", "a b"]
    golds = ["\u3000 42\n", "4 2", " \t\xa0", "x", "\u200bx", " a  b "]
    want = [a.strip() == g.strip() for a, g in zip(answers, golds)]
    assert want == [True, True, True, True, False, False]
    comps = [f"<answer>{a}</answer>" for a in answers]
    assert fp.grade(comps, golds, normalize="strip", backend=tier).tolist() == want
    boxed = [f"<answer>\\boxed{{{a}}}</answer>" for a in answers]
    assert fp.grade(boxed, golds, normalize="boxed", backend=tier).tolist() == want


def test_long_numeric_candidate_is_decided_on_host():
    big = "1" * 400
    comps = [f"<answer>{big}.000</answer>", f"<answer>{big}1</answer>"]
    for tier in TIERS:
        assert fp.grade(comps, [big, big], normalize="numeric", backend=tier).tolist() == [True, False]


def test_grade_input_errors():
    for tier in TIERS:
        with pytest.raises(TypeError, match="items must be str or a token-id tensor, got int"):
            fp.grade(["<answer>1</answer>", 7], ["1", "7"], backend=tier)
    with pytest.raises(ValueError, match="one gold per completion"):
        fp.grade(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="normalize"):
        fp.grade(["a"], ["a"], normalize="fuzzy")
    with pytest.raises(ValueError, match="group 2"):
        fp.grade(["a"], ["a"], group=2)
    with pytest.raises(fp.regex.UnsupportedPattern, match="backreference"):
        fp.grade(["aa"], ["a"], pattern=r"(a)\1")


@pytest.mark.gpu
@pytest.mark.parametrize("normalize", ["exact", "strip", "numeric", "boxed"])
def test_gpu_grading_equals_cpu(normalize):
    rng = random.Random(normalize + "gpu")
    answers = [_random_answer(rng) for _ in range(500)]
    golds = [rng.choice([a, "42", "0"]) for a in answers]
    comps = [f"pre <answer>{a}</answer> post" for a in answers]
    cpu = fp.grade(comps, golds, normalize=normalize, backend="cpu")
    ids = torch.full((len(comps), max(len(c.encode()) for c in comps)), -1, dtype=torch.int64)
    for i, c in enumerate(comps):
        ids[i, :len(c.encode())] = torch.tensor(list(c.encode()))
    gpu = fp.grade(ids.cuda(), golds, normalize=normalize, token_bytes=BYTE_TABLE.to("cuda"), backend="cuda")
    assert gpu.is_cuda and torch.equal(gpu.cpu(), cpu)
    gpu_text = fp.grade(comps, golds, normalize=normalize, device="cuda", backend="cuda")
    assert torch.equal(gpu_text.cpu(), cpu)


# ---- golds are never stringified (None, one str, numbers) ---------------------------------------
@pytest.mark.parametrize("tier", TIERS)
def test_none_gold_is_an_error_not_the_text_none(tier):
    with pytest.raises(ValueError, match=r"gold 1 is None: pass every gold answer as a str"):
        fp.grade(["<answer>1</answer>", "<answer>None</answer>"], ["1", None], backend=tier)
    with pytest.raises(ValueError, match=r"gold 0 is None"):
        fp.grade(["<answer>None</answer>"], [None], normalize="numeric", backend=tier)


def test_golds_as_one_string_is_an_error():
    with pytest.raises(ValueError, match=r"golds is one str .*\[gold\] \* len\(completions\)"):
        fp.grade(["<answer>12</answer>", "<answer>1</answer>"], "12")
    with pytest.raises(ValueError, match="one bytes"):
        fp.grade(["<answer>12</answer>"], b"12")
    with pytest.raises(TypeError, match="golds must be a list"):
        fp.grade(["<answer>12</answer>"], 12)


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("normalize", ["exact", "strip", "numeric"])
def test_number_golds_match_the_number(tier, normalize):
    big = "<answer>1000000000000000000000</answer>"
    comps = [big, "<answer>1e+21</answer>", "<answer>0.1</answer>", "<answer>42</answer>",
             "<answer>0.25</answer>", "<answer>7</answer>"]
    golds = [1e21, 1e21, 0.1, 42, Fraction(1, 4), np.int64(7)]
    assert fp.grade(comps, golds, normalize=normalize, backend=tier).tolist() == \
        [True, False, True, True, True, True]
    # numpy / torch arrays of numbers, and float32 values written with their own shortest digits
    assert fp.grade(comps[2:3], np.array([0.1], dtype=np.float32), normalize=normalize,
                    backend=tier).tolist() == [True]
    assert fp.grade(comps[3:4], torch.tensor([42]), normalize=normalize, backend=tier).tolist() == [True]


@pytest.mark.parametrize("tier", TIERS)
def test_golds_that_are_not_answers_are_one_line_errors(tier):
    comps = ["<answer>1</answer>"]
    for gold, err, msg in [(True, TypeError, "bool"), (float("nan"), ValueError, "finite"),
                           (Fraction(1, 3), ValueError, "no finite decimal"),
                           (b"1", TypeError, "decode"), ([1], TypeError, "pass golds as str")]:
        with pytest.raises(err, match=msg):
            fp.grade(comps, [gold], backend=tier)
        with pytest.raises(err, match=msg):
            fp.grade(comps, [gold], normalize="numeric", backend=tier)


@pytest.mark.parametrize("tier", TIERS)
def test_lone_surrogates_grade_like_python(tier):
    comps = ["<answer>x\udc80</answer>", "<answer> \ud800 </answer>", "<answer>x\udc80</answer>"]
    golds = ["x\udc80", "\ud800", "x\ud800"]
    assert fp.grade(comps, golds, backend=tier).tolist() == [True, True, False]
    if tier == "cpu":  # the GPU's path: items and golds as "surrogatepass" UTF-8 bytes
        from fastpass.regex.batch import make_items, run

        rx = fp.regex.compile(fp.R1_ANSWER.pattern, fp.R1_ANSWER.flags)
        raw = run(rx.program.code, rx.n_slots, make_items(comps), grade=(1, "strip", golds),
                  backend="cpu", offsets=(), text_as_bytes=True)
        assert (raw.grade > 0).tolist() == [True, True, False]
