"""One run per output folder: an exclusive ``flock`` on ``OUT/.fastpass.lock``, held for the whole run.

The kernel drops a ``flock`` when its process exits or is killed, so a crashed run never leaves a
stale lock behind; the file only keeps the holder's pid, for the error a second run prints.

Data-parallel ranks share one folder. Rank 0 (or the only process) takes the folder lock; every
other rank r waits until rank 0 holds it, then takes ``OUT/.fastpass.rank{r}.lock``. Before rank 0
starts, it checks that no rank lock is held: a rank of an earlier run whose rank 0 died may still
be appending to its ``samples.rank{r}.jsonl``. ``flock`` works on local filesystems and on NFS
(as a whole-file POSIX lock); a folder on a filesystem without locks gets a one-line error.

Locks are re-entrant within a process: the CLI takes the lock before the model loads (so a busy
folder fails in a second) and ``fp.screen`` takes it again for the run itself."""
from __future__ import annotations

import errno
import fcntl
import glob
import os
import threading

from fastpass.screen.errors import ScreenError, output_error

LOCK_FILE = ".fastpass.lock"
RANK_LOCK_GLOB = ".fastpass.rank*.lock"

_held: dict[str, list] = {}  # lock path -> [fd, count]
_mutex = threading.Lock()


def rank_lock_file(rank: int) -> str:
    return f".fastpass.rank{rank}.lock"


def _holder(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            pid = fh.read().strip().split()
        return f"pid {pid[0]}" if pid else "pid unknown"
    except OSError:
        return "pid unknown"


def _busy(out_dir: str, holder: str) -> ScreenError:
    return ScreenError(f"{out_dir} is in use by another fastpass screen run ({holder}): wait for it to finish, "
                       "stop it, or pass another --out folder")


def _try_lock(path: str) -> int | None:
    """An fd holding an exclusive flock on ``path``, or None when another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise ScreenError(f"cannot lock {path} ({exc.strerror}): the --out folder must be on a filesystem "
                          "with file locks; pass another --out folder") from None
    return fd


class FolderLock:
    """Held lock on one lock file; ``release()`` (or leaving a ``with`` block) lets it go."""

    def __init__(self, path: str):
        self.path = path

    def release(self) -> None:
        with _mutex:
            entry = _held.get(self.path)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] == 0:
                del _held[self.path]
                os.close(entry[0])  # closing the last descriptor drops the flock

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _reenter(path: str) -> FolderLock | None:
    entry = _held.get(path)
    if entry is None:
        return None
    entry[1] += 1
    return FolderLock(path)


def acquire(out_dir: str, rank: int = 0) -> FolderLock:
    """Takes the lock of ``out_dir`` for this process (rank 0: the folder lock; rank r > 0: its rank
    lock, after rank 0 holds the folder's). Raises ScreenError naming the holder's pid if taken."""
    out_dir = os.fspath(out_dir)
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as exc:
        raise output_error(exc, out_dir, "nothing was written") from None
    path = os.path.abspath(os.path.join(out_dir, LOCK_FILE if rank == 0 else rank_lock_file(rank)))
    with _mutex:
        held = _reenter(path)
        if held is not None:
            return held
        try:
            fd = _try_lock(path)
        except OSError as exc:  # cannot even create the lock file (read-only folder, full disk)
            raise output_error(exc, path, "nothing was written") from None
        if fd is None:
            raise _busy(out_dir, _holder(path))
        if rank == 0:
            for other in sorted(glob.glob(os.path.join(glob.escape(out_dir), RANK_LOCK_GLOB))):
                probe = _try_lock(other)
                if probe is None:  # a rank of an earlier data-parallel run is still writing
                    os.close(fd)
                    raise _busy(out_dir, f"{_holder(other)}, a data-parallel rank")
                os.close(probe)
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:
            pass  # the pid is only for the message a second run prints; the lock itself holds
        _held[path] = [fd, 1]
        return FolderLock(path)


def held(out_dir: str, rank: int = 0) -> bool:
    path = os.path.abspath(os.path.join(os.fspath(out_dir), LOCK_FILE if rank == 0 else rank_lock_file(rank)))
    return path in _held
