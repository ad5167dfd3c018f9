"""Presets against real rows of ../shared/data (GSM8K, MATH-500, AIME 24/25): gold extraction,
prompt building, and grading of completions written in each preset's answer format."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from fastpass.screen import ScreenError
from fastpass.screen.pipeline import prepare
from fastpass.screen.presets import BOXED_HINT, R1_ZERO_SYSTEM, get_preset, guess_preset, question_text

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data is absent")
ROWS = 25


def _first_rows(name: str, count: int = ROWS) -> list[dict]:
    with open(DATA / name) as fh:
        return [json.loads(line) for _, line in zip(range(count), fh)]


def _prepare(name: str, preset=None, **kw):
    # load only the first rows: a list of dicts goes through the same validation as a file
    return prepare(_first_rows(name), preset, **kw)


def test_guessed_presets():
    assert guess_preset(_first_rows("gsm8k_test.jsonl", 1)[0]) == "gsm8k"
    for name in ("math500_test.jsonl", "aime24_test.jsonl", "aime25_test.jsonl"):
        assert guess_preset(_first_rows(name, 1)[0]) == "math"
    preset, _, _ = prepare(str(DATA / "gsm8k_test.jsonl"), limit=3)
    assert preset.name == "gsm8k"


def test_gsm8k_gold_and_grading():
    preset, rule, probs = _prepare("gsm8k_test.jsonl", "gsm8k")
    rows = _first_rows("gsm8k_test.jsonl")
    for p, row in zip(probs, rows):
        assert p.question == row["question"]
        assert p.gold == row["answer"].split("####")[-1].strip().replace(",", "")
    golds = [p.gold for p in probs]
    right = [f"Let me think.\n{r['answer'].split('####')[0].strip()}\n#### {g}" for r, g in zip(rows, golds)]
    commas = [f"#### {int(g):,}" for g in golds]           # "1,000" == "1000" (numeric normaliser)
    fallback = [f"So the answer is {g}." for g in golds]  # GSM8K_ANSWER's fallback phrase
    wrong = [f"#### {int(g) + 1}" for g in golds]
    assert all(rule.grade_texts(right, golds))
    assert all(rule.grade_texts(commas, golds))
    assert all(rule.grade_texts(fallback, golds))
    assert not any(rule.grade_texts(wrong, golds))
    assert rule.stop is not None  # first '#### n' is graded, so sampling may stop there
    assert "#### <number>" in preset.template.user.format(question="q")


@pytest.mark.parametrize("name", ["math500_test.jsonl", "aime24_test.jsonl", "aime25_test.jsonl"])
@pytest.mark.parametrize("preset_name", ["boxed", "math"])
def test_boxed_presets_on_math_and_aime(name, preset_name):
    preset, rule, probs = _prepare(name, preset_name)
    rows = _first_rows(name)
    assert [p.gold for p in probs] == [str(r["answer"]).strip() for r in rows]
    for p in probs:
        q = question_text(preset, p.question)
        assert q.count("\\boxed") >= 1 and (BOXED_HINT in q or BOXED_HINT in p.question)
    golds = [p.gold for p in probs]
    right = [f"First \\boxed{{wrong}} then, finally, the answer is $\\boxed{{{g}}}$." for g in golds]
    wrong = [f"The answer is \\boxed{{{g}}} or maybe \\boxed{{nope}}" for g in golds]  # last box graded
    assert all(rule.grade_texts(right, golds))
    assert not any(rule.grade_texts(wrong, golds))
    assert rule.stop is None  # the last \boxed{} is graded: never stop at the first


def test_math_normaliser_on_aime_and_math500():
    _, rule, probs = _prepare("aime24_test.jsonl", "math")
    golds = [p.gold for p in probs]
    assert all(rule.grade_texts([f"\\boxed{{0{g}}}" for g in golds], golds))  # 033 == 33
    _, rule, probs = _prepare("math500_test.jsonl", "math")
    fracs = [(p.gold, p.gold.replace("\\frac", "\\dfrac")) for p in probs if p.gold.startswith("\\frac")]
    assert fracs, "MATH-500's first rows hold a \\frac answer"
    assert all(rule.grade_texts([f"\\boxed{{{d}}}" for _, d in fracs], [g for g, _ in fracs]))


def test_r1_preset_prompt_and_fields():
    preset, rule, probs = _prepare("gsm8k_test.jsonl", "r1", answer_field="answer")
    text = preset.template.plain_text(probs[0].question)
    assert text.startswith(R1_ZERO_SYSTEM) and text.endswith(f"User: {probs[0].question}. Assistant:")
    msgs = preset.template.messages(probs[0].question)
    assert msgs[0] == {"role": "system", "content": R1_ZERO_SYSTEM} and msgs[-1]["content"] == probs[0].question
    assert rule.grade_texts(["<think>x</think> <answer> 7 </answer>"], ["7"]) == [True]
    _, _, aime = _prepare("aime24_test.jsonl", "r1", question_field="problem")
    assert aime[0].question == _first_rows("aime24_test.jsonl", 1)[0]["problem"]
    with pytest.raises(ScreenError, match="--question-field"):
        _prepare("aime24_test.jsonl", "gsm8k")
    with pytest.raises(ScreenError, match="missing field 'solution'"):
        _prepare("math500_test.jsonl", "math", answer_field="solution")
    assert get_preset("default").rule.pattern == rule.rule.pattern


def test_token_grading_equals_text_grading_with_smollm2_tokenizer():
    """What screening runs (fp.grade on generated token ids + token bytes) equals grading the
    decoded text, for real GSM8K and MATH-500 answers through SmolLM2's byte-level BPE."""
    from fastpass.screen.loading import EMBEDDED_GGUF, embedded_model_dir

    try:
        folder = embedded_model_dir()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder, gguf_file=EMBEDDED_GGUF, local_files_only=True)
    for name, preset_name, fmt in [("gsm8k_test.jsonl", "gsm8k", "Work: 3 + 4 = 7.\n#### {g}\n"),
                                   ("math500_test.jsonl", "math", "So it is $\\boxed{{{g}}}$."),
                                   ("math500_test.jsonl", "r1", "<think>ok</think><answer> {g} </answer>")]:
        _, rule, probs = _prepare(name, preset_name, answer_field="answer")
        golds = [p.gold for p in probs]
        texts = [fmt.format(g=g) if i % 3 else fmt.format(g=g + "0") for i, g in enumerate(golds)]
        ids = [tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for t in texts]
        by_text = rule.grade_texts(texts, golds)
        assert rule.grade_tokens(ids, golds, tok, [tok.eos_token_id], "cpu") == by_text, name
        assert any(by_text) and not all(by_text)


def test_numeric_answers_become_plain_decimals_not_exponents():
    from fastpass.screen.presets import get_preset
    from fastpass.screen.problems import load_problems

    rows = [{"question": "big?", "answer": 1e21}, {"question": "three?", "answer": 3}, {"question": "b?", "answer": True}]
    probs = load_problems(rows[:2], get_preset("r1"))
    assert [p.gold for p in probs] == ["1000000000000000000000", "3"]
    with pytest.raises(ScreenError, match="not a string or a number"):
        load_problems(rows[2:], get_preset("r1"))
