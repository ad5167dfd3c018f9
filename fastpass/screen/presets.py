"""Prompt templates and grading presets: how a problem becomes a prompt and how a completion is graded.

A preset names the fields it reads, how the gold answer is taken from the answer field, the
template, the answer pattern and the normaliser handed to ``fp.grade``."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from fastpass.grading import BOXED, GSM8K_ANSWER, R1_ANSWER, GradePreset, gold_text
from fastpass.screen.errors import ScreenError

R1_ZERO_SYSTEM = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves "
    "it. The assistant first thinks about the reasoning process in the mind and then provides the "
    "user with the answer. The reasoning process and answer are enclosed within <think> </think> and "
    "<answer> </answer> tags, respectively, i.e., <think> reasoning process here </think> "
    "<answer> answer here </answer>.")


@dataclass(frozen=True)
class Template:
    """``user`` and ``plain`` are format strings with ``{question}``.

    With a chat template the prompt is: optional ``system`` message, the ``shots`` as
    (user question, assistant reply) turns, then the user turn. Without one it is ``plain``
    (or ``system`` + ``user`` joined as a User/Assistant transcript)."""

    user: str = "{question}"
    system: str | None = None
    plain: str | None = None
    shots: tuple[tuple[str, str], ...] = ()

    def messages(self, question: str) -> list[dict]:
        msgs = [{"role": "system", "content": self.system}] if self.system else []
        for q, a in self.shots:
            msgs += [{"role": "user", "content": self.user.format(question=q)},
                     {"role": "assistant", "content": a}]
        msgs.append({"role": "user", "content": self.user.format(question=question)})
        return msgs

    def plain_text(self, question: str) -> str:
        if self.plain is not None:
            return self.plain.format(question=question)
        head = f"{self.system} " if self.system else ""
        turns = "".join(f"User: {self.user.format(question=q)}\nAssistant: {a}\n" for q, a in self.shots)
        return f"{head}{turns}User: {self.user.format(question=question)}\nAssistant:"

    def to_dict(self) -> dict:
        return {"user": self.user, "system": self.system, "plain": self.plain,
                "shots": [list(s) for s in self.shots]}


def _gold_strip(value) -> str:
    if isinstance(value, str):
        return value.strip()
    try:  # a number as its plain decimal (1e21 -> "1000000000000000000000"), as fp.grade writes it
        return gold_text(0, value)
    except (TypeError, ValueError) as exc:
        raise ScreenError(f"the answer {value!r} is not a string or a number: write it as a string") from exc


def _gold_after_hashes(value) -> str:
    text = str(value)
    if "####" not in text:
        raise ScreenError(f"GSM8K answer has no '#### <number>' line ({text[:40]!r}...): use the "
                          "GSM8K test file or --preset r1 with a plain answer field")
    return text.rsplit("####", 1)[1].strip().replace(",", "")


@dataclass(frozen=True)
class Preset:
    """``rule`` is the grading rule handed to ``fp.grade`` (pattern, flags, group, normaliser,
    occurrence, fallback)."""

    name: str
    template: Template
    rule: GradePreset
    question_fields: tuple[str, ...] = ("question", "problem", "prompt")
    answer_fields: tuple[str, ...] = ("answer", "solution", "target")
    gold: callable = field(default=_gold_strip, repr=False)

    def describe(self) -> dict:
        r = self.rule
        return {"name": self.name, "pattern": r.pattern, "flags": r.flags, "normalize": r.normalize,
                "occurrence": r.occurrence}


BOXED_HINT = "Please reason step by step, and put your final answer within \\boxed{}."

PRESETS: dict[str, Preset] = {
    "r1": Preset("r1", Template(user="{question}", system=R1_ZERO_SYSTEM,
                                plain=R1_ZERO_SYSTEM + " User: {question}. Assistant:"), R1_ANSWER),
    "gsm8k": Preset("gsm8k", Template(
        user="{question}\nSolve it step by step. End with the final answer on its own line as "
             "\"#### <number>\"."),
        GSM8K_ANSWER, question_fields=("question",), gold=_gold_after_hashes),
    "boxed": Preset("boxed", Template(user="{question}"), BOXED, question_fields=("problem", "question")),
    "math": Preset("math", Template(user="{question}"), replace(BOXED, name="math", normalize="math"),
                   question_fields=("problem", "question")),
}


# The embedded default set's preset lives here (not in default_set.py) so that presets never
# imports the problem modules: default_set -> presets/problems, problems -> presets, no cycle.
DEFAULT_INSTRUCTION = "Answer the question with one word or number inside <answer></answer> tags."
DEFAULT_SHOTS = (("What is the capital of Italy?", "<answer>Rome</answer>"),
                 ("What is 2 + 3?", "<answer>5</answer>"),
                 ("What color is snow?", "<answer>white</answer>"))
DEFAULT_PRESET = Preset(
    "default", Template(user=DEFAULT_INSTRUCTION + "\n{question}", shots=DEFAULT_SHOTS), R1_ANSWER)


def get_preset(name: str) -> Preset:
    presets = dict(PRESETS, default=DEFAULT_PRESET)
    if name not in presets:
        raise ScreenError(f"unknown preset {name!r}: choose one of {', '.join(sorted(presets))}")
    return presets[name]


def guess_preset(row: dict) -> str:
    """The preset a problem file's first row looks like (GSM8K's '####', MATH's \\boxed hint)."""
    answer = str(row.get("answer", ""))
    if "\n#### " in answer or answer.startswith("#### "):
        return "gsm8k"
    if "problem" in row and "question" not in row:
        return "math"
    return "r1"


def question_text(preset: Preset, question: str) -> str:
    """MATH-style presets append the boxed instruction when the problem text lacks it (AIME)."""
    if preset.rule.normalize in ("boxed", "math") and "\\boxed" not in question:
        return f"{question.rstrip()}\n{BOXED_HINT}"
    return question
