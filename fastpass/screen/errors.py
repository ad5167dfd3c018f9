"""Errors a user can fix: one line each, naming the fix (the CLI prints them without a traceback)."""
from __future__ import annotations

import errno
import os


class ScreenError(ValueError):
    """Bad input to ``fp.screen`` / ``fastpass screen``: the message says what to change."""


class ModelLoadError(RuntimeError):
    """A model or tokenizer could not be loaded offline."""


class OutputError(OSError):
    """Writing to the output folder failed (full disk, I/O error, read-only folder). What was
    finished before is kept; the message names the path and what to do. ``errno`` is the cause's."""

    def __str__(self) -> str:  # the message, not OSError's "[Errno N] strerror"
        return str(self.args[0]) if self.args else ""


def output_error(exc: OSError, path: str, kept: str) -> OutputError:
    """One line for an OSError while writing ``path``: the cause, the path, the fix. ``kept`` says
    what is safe on disk (e.g. "finished problems are kept")."""
    code = getattr(exc, "errno", None)
    reason = exc.strerror or type(exc).__name__
    if code in (errno.ENOSPC, errno.EDQUOT):
        fix = "free space on that disk (or pass another --out folder), then rerun with --resume"
    elif code in (errno.EROFS, errno.EACCES, errno.EPERM):
        fix = "pass an --out folder you can write to (with --resume to continue there)"
    else:
        fix = "check that disk (or pass another --out folder), then rerun with --resume"
    out = OutputError(f"{reason} while writing {path} ({kept}): {fix}")
    out.errno, out.strerror = code, exc.strerror
    return out


def atomic_write(path: str, write, kept: str = "the previous file is unchanged") -> None:
    """Writes ``path`` by ``write(file object)`` into a temporary file in the same folder, fsyncs it
    and renames it over ``path``: readers see the old file or the new one, never a part of it."""
    folder, base = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".{base}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise output_error(exc, path, kept) from None
