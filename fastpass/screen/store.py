"""samples.jsonl: append-only, one line per finished problem, whole lines or nothing.

Each line is written with one ``os.write`` on an O_APPEND descriptor and fsync'd, so a Ctrl-C
(Python delivers signals between bytecodes, not inside a write) or a kill leaves either the whole
line or none of it. If the write or the fsync fails (full disk, I/O error) the file is truncated
back to its last complete line and the run stops with one line naming the path and the fix. A
torn tail from a crash mid-syscall (power loss) is dropped on resume, so that problem runs again.

Every row carries the run's fingerprint (``run``: model, template, rule, n, seed, sampling) and
its problem's hash (``problem``: id, question, gold and the prompt's token ids), so ``--resume``
reuses a row only for the very problem, prompt and settings it was sampled for."""
from __future__ import annotations

import hashlib
import json
import os

from fastpass.screen.errors import ScreenError, output_error

SAMPLES_FILE = "samples.jsonl"
_REMOVE = "remove that line (its problem is sampled again) or pass another --out folder"


def problem_hash(problem, prompt_ids) -> str:
    """What determines a problem's counts besides the run settings: its id, question, gold and the
    token ids of its prompt (so a changed template or tokenizer counts as a change too)."""
    blob = json.dumps([problem.id, problem.question, problem.gold, [int(t) for t in prompt_ids]],
                      ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _check_row(row, path: str, lineno: int) -> dict:
    """A parsed samples line, or ScreenError naming the line and what is wrong with it."""
    if not isinstance(row, dict):
        raise ScreenError(f"{path}:{lineno}: not a samples line (a JSON {type(row).__name__}, not an object): {_REMOVE}")
    for key in ("index", "n", "c"):
        value = row.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            what = "missing" if key not in row else f"{value!r} is not a non-negative integer"
            raise ScreenError(f"{path}:{lineno}: not a samples line ({key!r} {what}): {_REMOVE}")
    if not 0 <= row["c"] <= row["n"] or row["n"] == 0:
        raise ScreenError(f"{path}:{lineno}: not a samples line (c = {row['c']}, n = {row['n']}): {_REMOVE}")
    if not isinstance(row.get("id"), str):
        raise ScreenError(f"{path}:{lineno}: not a samples line ('id' missing or not a string): {_REMOVE}")
    return row


def read_rows(path: str, fingerprint: str) -> dict[int, dict]:
    """Finished problems of one samples file by index, read only; a torn last line is ignored."""
    with open(path, "rb") as fh:
        complete = fh.read().rpartition(b"\n")[0]
    done: dict[int, dict] = {}
    for lineno, line in enumerate(complete.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ScreenError(f"{path}:{lineno}: not a samples line (malformed JSON): {_REMOVE}") from None
        except RecursionError:
            raise ScreenError(f"{path}:{lineno}: not a samples line (JSON nested too deeply): {_REMOVE}") from None
        row = _check_row(row, path, lineno)
        if row.get("run") != fingerprint:
            raise ScreenError(f"{path} was written by a run with other settings (model, n, seed, template, "
                              "rule or sampling): resume with the same settings or pass another --out folder")
        row["_where"] = f"{path}:{lineno}"  # for a message that names the line; never written back
        done[row["index"]] = row
    return done


def check_resumed(done: dict[int, dict], problems, hashes: list[str]) -> None:
    """Every finished row kept for resuming must belong to the same problem: same id, question,
    gold and prompt. A changed problem is refused with a line that names it (its old counts would
    be reported for the new problem)."""
    for p, h in zip(problems, hashes):
        row = done.get(p.index)
        if row is None or row.get("problem") == h:
            continue
        where = row.get("_where", SAMPLES_FILE)
        if "problem" not in row:
            why = "it was written by an older fastpass that did not record the problem"
        elif row.get("id") != p.id:
            why = f"it holds problem {row.get('id')!r} where the data now has {p.id!r}"
        else:
            why = "its question, gold or prompt changed since it was sampled"
        raise ScreenError(f"{where}: cannot resume problem {p.id!r} (index {p.index}): {why}; resume with the "
                          "data and template of that run, or pass another --out folder")


def public(row: dict) -> dict:
    return {k: v for k, v in row.items() if not k.startswith("_")}


class SampleStore:
    """This process's samples file in ``out_dir``. ``problem_hashes`` (index -> hash) is stamped on
    every appended row."""

    def __init__(self, out_dir: str, fingerprint: str, resume: bool, filename: str = SAMPLES_FILE,
                 problem_hashes: dict[int, str] | None = None):
        self.out_dir = out_dir
        self.path = os.path.join(out_dir, filename)
        self.fingerprint = fingerprint
        self.problem_hashes = dict(problem_hashes or {})
        try:
            os.makedirs(out_dir, exist_ok=True)
        except OSError as exc:
            raise output_error(exc, out_dir, "nothing was written") from None
        self.done: dict[int, dict] = {}
        if os.path.exists(self.path) and os.path.getsize(self.path) > 0:
            if not resume:
                raise ScreenError(f"{self.path} already holds results: pass --resume (resume=True) to "
                                  "continue that run, or choose another --out folder")
            self._load()
        self._fd = None

    def _load(self) -> None:
        with open(self.path, "rb") as fh:
            data = fh.read()
        complete, _, torn = data.rpartition(b"\n")
        if torn:  # a line cut short by a crash: drop it, that problem runs again
            try:
                with open(self.path, "r+b") as fh:
                    fh.truncate(len(complete) + (1 if complete else 0))
            except OSError as exc:
                raise output_error(exc, self.path, "its complete lines are unchanged") from None
        self.done = read_rows(self.path, self.fingerprint)

    def append(self, row: dict) -> None:
        """Appends one whole line (or nothing: on a failed write the file is cut back)."""
        row = dict(public(row), run=self.fingerprint)
        if row["index"] in self.problem_hashes:
            row["problem"] = self.problem_hashes[row["index"]]
        line = (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            end = os.fstat(self._fd).st_size  # the folder lock keeps every other writer out
        except OSError as exc:
            raise output_error(exc, self.path, "finished problems are kept") from None
        try:
            view = memoryview(line)
            while view:  # one write for any sane line; the loop only guards against short writes
                view = view[os.write(self._fd, view):]
            os.fsync(self._fd)
        except OSError as exc:
            kept = "finished problems are kept"
            try:
                os.ftruncate(self._fd, end)  # back to the last complete line
                os.fsync(self._fd)
            except OSError:
                kept = "finished problems are kept; a torn last line is dropped on --resume"
            raise output_error(exc, self.path, kept) from None
        self.done[int(row["index"])] = row

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
