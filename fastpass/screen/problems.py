"""Problem files: JSONL in, validated ``Problem`` records out (errors name the line and the fix)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

from fastpass.screen.errors import ScreenError
from fastpass.screen.presets import Preset


@dataclass(frozen=True)
class Problem:
    """``index`` is the problem's position in its file: it is also its random stream id, so a
    problem's samples do not depend on which other problems run beside it (or on resume)."""

    index: int
    id: str
    question: str
    gold: str

    def to_dict(self) -> dict:
        return {"index": self.index, "id": self.id, "question": self.question, "gold": self.gold}


def read_jsonl(path) -> list[tuple[int, dict]]:
    """(line number, row) for every non-blank line; raises ScreenError naming the bad line."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"problem file {path!r} does not exist: pass an existing JSONL file to --data")
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ScreenError(f"{path}:{lineno}: malformed JSON ({exc.msg} at column {exc.colno}): "
                                  "fix that line (one JSON object per line)") from None
            if not isinstance(row, dict):
                raise ScreenError(f"{path}:{lineno}: expected a JSON object per line, got "
                                  f"{type(row).__name__}: fix that line")
            rows.append((lineno, row))
    if not rows:
        raise ScreenError(f"{path} holds no problems (empty file): pass a JSONL file with one "
                          "object per line")
    return rows


def _pick_field(rows, given: str | None, candidates: tuple[str, ...], what: str, flag: str, where: str) -> str:
    lineno, first = rows[0]
    if given is not None:
        return given
    for name in candidates:
        if name in first:
            return name
    raise ScreenError(f"{where}:{lineno}: no {what} field (looked for {', '.join(candidates)}; the row has "
                      f"{', '.join(sorted(first)) or 'no fields'}): pass {flag}")


def problems_from_rows(rows: list[tuple[int, dict]], preset: Preset, question_field: str | None = None,
                       answer_field: str | None = None, where: str = "problems") -> list[Problem]:
    qf = _pick_field(rows, question_field, preset.question_fields, "question", "--question-field", where)
    af = _pick_field(rows, answer_field, preset.answer_fields, "answer", "--answer-field", where)
    problems = []
    for index, (lineno, row) in enumerate(rows):
        for name, flag in ((qf, "--question-field"), (af, "--answer-field")):
            if name not in row:
                raise ScreenError(f"{where}:{lineno}: missing field {name!r} (the row has "
                                  f"{', '.join(sorted(row)) or 'no fields'}): fix the row or pass {flag}")
        question = row[qf]
        if not isinstance(question, str) or not question.strip():
            raise ScreenError(f"{where}:{lineno}: field {qf!r} must be a non-empty string: fix that row")
        if row[af] is None or (isinstance(row[af], (dict, list))):
            raise ScreenError(f"{where}:{lineno}: field {af!r} must be a string or a number: fix that row")
        try:
            gold = preset.gold(row[af])
        except ScreenError as exc:
            raise ScreenError(f"{where}:{lineno}: {exc}") from None
        pid = row.get("id", row.get("unique_id", index))
        problems.append(Problem(index, str(pid), question, gold))
    return problems


def load_problems(source, preset: Preset, question_field: str | None = None, answer_field: str | None = None,
                  limit: int | None = None) -> list[Problem]:
    """Problems from a JSONL path, a list of dicts, or a list of ``Problem``; the first ``limit``."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ScreenError(f"limit must be a positive integer, got {limit!r}")
    if isinstance(source, (str, os.PathLike)):
        rows, where = read_jsonl(source), os.fspath(source)
    elif isinstance(source, (list, tuple)):
        if not source:
            raise ScreenError("problems is empty: pass at least one problem")
        if all(isinstance(p, Problem) for p in source):
            return list(source[:limit])
        bad = [i for i, r in enumerate(source) if not isinstance(r, dict)]
        if bad:
            raise ScreenError(f"problems[{bad[0]}] is a {type(source[bad[0]]).__name__}: pass dicts with "
                              "question and answer fields, Problem objects, or a JSONL path")
        rows, where = [(i + 1, r) for i, r in enumerate(source)], "problems"
    else:
        raise ScreenError(f"problems must be a JSONL path or a list of dicts, got {type(source).__name__}")
    if limit is not None:
        rows = rows[:limit]
    return problems_from_rows(rows, preset, question_field, answer_field, where)
