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

from fastpass.screen.presets import DEFAULT_INSTRUCTION, DEFAULT_PRESET, DEFAULT_SHOTS  # noqa: F401 (re-export)
from fastpass.screen.problems import Problem

# Defaults of the embedded run, sized for about 3 minutes on 2 CPU cores.
DEFAULT_N = 16
DEFAULT_MAX_NEW_TOKENS = 16

# Chosen from measured candidates (SmolLM2-135M-Instruct, n = 16, this template): every band from
# "nearly always" to "never" is represented; see the README for the measured pass rates.
_CAPITALS = [("France", "Paris"), ("the United Kingdom", "London"), ("Germany", "Berlin"), ("Spain", "Madrid"),
             ("Russia", "Moscow"), ("Mexico", "Mexico City"), ("China", "Beijing"), ("Egypt", "Cairo")]
_ARITHMETIC = [(4, "+", 4), (5, "x", 3), (17, "+", 25)]
_FACTS = [("opposite-up", "What is the opposite of up?", "down"),
          ("sky-color", "What color is the sky?", "blue"),
          ("largest-planet", "What is the largest planet in the solar system?", "Jupiter"),
          ("frozen-water", "What is frozen water called?", "ice"),
          ("gold-symbol", "What is the chemical symbol for gold?", "Au"),
          ("first-letter", "What is the first letter of the alphabet?", "A")]


def _slug(text: str) -> str:
    return text.lower().replace("the ", "").replace(" ", "-")


def default_rows() -> list[dict]:
    """The default set as JSONL-style rows (id, question, answer): capitals, small arithmetic
    (answers computed here) and everyday facts."""
    rows = [{"id": f"capital-{_slug(country)}", "question": f"What is the capital of {country}?",
             "answer": capital} for country, capital in _CAPITALS]
    ops = {"+": lambda a, b: a + b, "x": lambda a, b: a * b}
    rows += [{"id": f"arith-{a}{'plus' if op == '+' else 'times'}{b}", "question": f"What is {a} {op} {b}?",
              "answer": str(ops[op](a, b))} for a, op, b in _ARITHMETIC]
    rows += [{"id": pid, "question": q, "answer": a} for pid, q, a in _FACTS]
    return rows


def default_problems() -> list[Problem]:
    return [Problem(i, r["id"], r["question"], r["answer"]) for i, r in enumerate(default_rows())]
