"""samples.jsonl: append-only, one line per finished problem, never a half-written line.

Each line is written with a single ``os.write`` on an O_APPEND descriptor and fsync'd, so a
Ctrl-C (Python delivers signals between bytecodes, not inside a write) or a kill leaves either
the whole line or none of it. A torn tail from a crash mid-syscall (power loss) is dropped on
resume, so that problem simply runs again."""
from __future__ import annotations

import json
import os

from fastpass.screen.errors import ScreenError

SAMPLES_FILE = "samples.jsonl"


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
        except json.JSONDecodeError:
            raise ScreenError(f"{path}:{lineno}: not a samples line (malformed JSON): remove that "
                              "line or choose another --out folder") from None
        if row.get("run") != fingerprint:
            raise ScreenError(f"{path} was written by a run with other settings (model, data, n, "
                              "seed, template or sampling): resume with the same settings or choose "
                              "another --out folder")
        done[int(row["index"])] = row
    return done


class SampleStore:
    def __init__(self, out_dir: str, fingerprint: str, resume: bool, filename: str = SAMPLES_FILE):
        self.out_dir = out_dir
        self.path = os.path.join(out_dir, filename)
        self.fingerprint = fingerprint
        os.makedirs(out_dir, exist_ok=True)
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
            with open(self.path, "r+b") as fh:
                fh.truncate(len(complete) + (1 if complete else 0))
        self.done = read_rows(self.path, self.fingerprint)

    def append(self, row: dict) -> None:
        row = dict(row, run=self.fingerprint)
        line = (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        view = memoryview(line)
        while view:  # one write for any sane line; the loop only guards against short writes
            view = view[os.write(self._fd, view):]
        os.fsync(self._fd)
        self.done[int(row["index"])] = row

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
