"""Problem files: JSONL in, validated ``Problem`` records out (errors name the line and the fix)."""
from __future__ import annotations

import json
import os
import re
import sys
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


STDIN = "-"


@dataclass(frozen=True)
class ProblemFile:
    """A problem file read once: its name and its (line number, row) pairs. Standard input or a
    pipe (``--data -``, ``/dev/stdin``) cannot be read twice, so the CLI reads the file once and
    hands this object on."""

    path: str
    rows: tuple

    @property
    def name(self) -> str:
        return "standard input" if self.path == STDIN else self.path


def _read_bytes(path: str) -> bytes:
    if path == STDIN:
        return sys.stdin.buffer.read()
    if not os.path.exists(path):
        raise FileNotFoundError(f"problem file {path!r} does not exist: pass an existing JSONL file to --data")
    if os.path.isdir(path):
        raise ScreenError(f"--data {path!r} is a folder: pass a JSONL file (one JSON object per line)")
    with open(path, "rb") as fh:
        return fh.read()


_SURROGATE = re.compile("[\ud800-\udfff]")


def _lone_surrogate(text: str) -> int:
    """Position of the first lone surrogate (from a JSON escape like \\udc80), or -1. Such text is
    not valid Unicode: no tokenizer encodes it and no decoded completion can contain it."""
    m = _SURROGATE.search(text)
    return m.start() if m else -1


def read_jsonl(path) -> list[tuple[int, dict]]:
    """(line number, row) for every non-blank line, reading the file once (``"-"``: standard
    input); raises ScreenError naming the bad line and the fix."""
    return list(read_problem_file(path).rows)


def read_problem_file(path) -> ProblemFile:
    path = os.fspath(path)
    data = _read_bytes(path)
    where = "standard input" if path == STDIN else path
    rows = []
    for lineno, raw in enumerate(data.split(b"\n"), 1):
        if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]  # a UTF-8 byte-order mark (editors on Windows write one)
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ScreenError(f"{where}:{lineno}: not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}): "
                              "save the file as UTF-8") from None
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ScreenError(f"{where}:{lineno}: malformed JSON ({exc.msg} at column {exc.colno}): "
                              "fix that line (one JSON object per line)") from None
        except RecursionError:
            raise ScreenError(f"{where}:{lineno}: JSON nested too deeply to read: fix that line (one flat "
                              "object per problem)") from None
        if not isinstance(row, dict):
            raise ScreenError(f"{where}:{lineno}: expected a JSON object per line, got "
                              f"{type(row).__name__}: fix that line")
        rows.append((lineno, row))
    if not rows:
        raise ScreenError(f"{where} holds no problems (empty file): pass a JSONL file with one "
                          "object per line")
    return ProblemFile(path, tuple(rows))


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
        pid = row.get("id", row.get("unique_id", index))
        for name, value in ((qf, question), (af, row[af]), ("id", pid)):
            at = _lone_surrogate(value) if isinstance(value, str) else -1
            if at >= 0:
                raise ScreenError(f"{where}:{lineno}: field {name!r} holds a lone surrogate "
                                  f"({value[at]!r} at character {at}), which is not valid Unicode: fix that text")
        if row[af] is None or (isinstance(row[af], (dict, list))):
            raise ScreenError(f"{where}:{lineno}: field {af!r} must be a string or a number: fix that row")
        try:
            gold = preset.gold(row[af])
        except ScreenError as exc:
            raise ScreenError(f"{where}:{lineno}: {exc}") from None
        problems.append(Problem(index, str(pid), question, gold))
    return problems


def load_problems(source, preset: Preset, question_field: str | None = None, answer_field: str | None = None,
                  limit: int | None = None) -> list[Problem]:
    """Problems from a JSONL path (``"-"``: standard input), a ``ProblemFile``, a list of dicts, or a
    list of ``Problem``; the first ``limit``."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ScreenError(f"limit must be a positive integer, got {limit!r}")
    if isinstance(source, (str, os.PathLike)):
        source = read_problem_file(source)
    if isinstance(source, ProblemFile):
        rows, where = list(source.rows), source.name
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
