"""The embedded default problem set, generated here rather than shipped as data.

SmolLM2-135M-Instruct scores 0 on two-digit sums in <answer> tags when asked cold, so a useful
default needs items this tiny model sometimes gets right. Three worked examples in the chat
(few-shot turns) teach it the <answer>...</answer> format; the items then mix well-known facts
(high pass rates), less-known facts (low) and one-digit arithmetic (low but non-zero), so the
pass@k curve climbs from pass@1 well below 1 and the elicitation gap is visible at K = 16.
Grading is the seed's rule: fp.R1_ANSWER, stripped capture == gold; sequences stop once
</answer> closes, so most completions are a handful of tokens and the run fits 2 CPU cores.
"""
from __future__ import annotations

from fastpass.grading import R1_ANSWER
from fastpass.screen.presets import Preset, Template
from fastpass.screen.problems import Problem

DEFAULT_INSTRUCTION = "Answer the question with one word or number inside <answer></answer> tags."
DEFAULT_SHOTS = (("What is the capital of Italy?", "<answer>Rome</answer>"),
                 ("What is 2 + 3?", "<answer>5</answer>"),
                 ("What color is snow?", "<answer>white</answer>"))

DEFAULT_PRESET = Preset(
    "default", Template(user=DEFAULT_INSTRUCTION + "\n{question}", shots=DEFAULT_SHOTS), R1_ANSWER)

# Defaults of the embedded run, sized for about 3 minutes on 2 CPU cores.
DEFAULT_N = 16
DEFAULT_MAX_NEW_TOKENS = 16

_CAPITALS = [("France", "Paris"), ("Germany", "Berlin"), ("Japan", "Tokyo"), ("Spain", "Madrid"),
             ("Egypt", "Cairo"), ("Australia", "Canberra"), ("Canada", "Ottawa")]
_SUMS = [(1, 1), (3, 4), (5, 3)]
_FACTS = [("How many legs does a dog have?", "4"), ("What is the largest planet in the solar system?", "Jupiter"),
          ("What color is grass?", "green"), ("Which animal says moo?", "cow")]


def default_rows() -> list[dict]:
    """The default set as JSONL-style rows (id, question, answer)."""
    rows = [{"id": f"capital-{country.lower()}", "question": f"What is the capital of {country}?",
             "answer": capital} for country, capital in _CAPITALS]
    rows += [{"id": f"sum-{a}-{b}", "question": f"What is {a} + {b}?", "answer": str(a + b)} for a, b in _SUMS]
    rows += [{"id": f"fact-{i}", "question": q, "answer": a} for i, (q, a) in enumerate(_FACTS)]
    return rows


def default_problems() -> list[Problem]:
    return [Problem(i, r["id"], r["question"], r["answer"]) for i, r in enumerate(default_rows())]
