"""Data-parallel screening: one process per GPU (or CPU slice), problems sharded across ranks.

Usage::

    torchrun --nproc_per_node 8 -m fastpass screen --model DIR --data problems.jsonl --out run1
    python -m torch.distributed.run --nproc_per_node 2 -m fastpass screen --device cpu ...   # CPU, gloo
    torchrun ... -m fastpass screen ... --out run1 --resume                  # continue a crashed run

Problem i goes to rank i % WORLD_SIZE. Each rank samples with the keys a single process would use
(seed, stream id = problem index, sample index, step), so the counts equal a one-process run with
the same seed. Rank r appends its finished problems to ``OUT/samples.rank{r}.jsonl``; when every
rank is done, rank 0 merges all of them into ``OUT/samples.jsonl`` in problem order, removes the
per-rank files and writes the report. ``--resume`` reads every samples file in OUT (merged,
per-rank, even from a run with another world size), so each rank skips what is already done.
OUT must be on a filesystem all ranks see (any local path on one node).

GPU ranks use ``cuda:LOCAL_RANK`` and an NCCL process group; CPU ranks use gloo and split the free
cores between them. Only rank 0 shows progress and prints the verdict. Ranks coordinate through
the rendezvous store rather than collectives, so waiting can be interrupted: a rank that raises
posts its error and every other rank stops with a non-zero exit naming it; a rank that makes no
progress (no finished sampler call) for ``FASTPASS_DIST_TIMEOUT`` seconds (default 1800) is
declared lost and the others stop too."""
from __future__ import annotations

import glob
import json
import os
import time
from dataclasses import dataclass, field

from fastpass.screen.errors import ScreenError, atomic_write
from fastpass.screen.lock import FolderLock, acquire
from fastpass.screen.store import SAMPLES_FILE, public, read_rows

ENV_TIMEOUT = "FASTPASS_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 1800.0
RANK_FILE_GLOB = "samples.rank*.jsonl"
_INT_STATS = ("tokens", "samples", "problems_sampled", "problems_resumed", "oom_retries")


class DistributedError(RuntimeError):
    """Another rank failed or went silent; this rank stops instead of waiting forever."""


@dataclass
class Shard:
    """This process's part of the run. ``Shard()`` is the whole run in one process."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    store: object = None  # c10d Store shared by the ranks (None in one process)
    timeout_s: float = DEFAULT_TIMEOUT_S
    poll_s: float = 0.2
    _seen: dict = field(default_factory=dict, repr=False)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def samples_file(self) -> str:
        return f"samples.rank{self.rank}.jsonl" if self.distributed else SAMPLES_FILE

    @property
    def label(self) -> str:
        return f"screen rank {self.rank}/{self.world_size}" if self.distributed else "screen"

    def owns(self, index: int) -> bool:
        return index % self.world_size == self.rank

    # ---- coordination through the store ------------------------------------------------------
    def heartbeat(self) -> None:
        if self.distributed:
            self._call(self.store.add, f"hb/{self.rank}", 1)

    def post(self, phase: str, payload: dict | None = None) -> None:
        if self.distributed:
            self._call(self.store.set, f"{phase}/{self.rank}", json.dumps(payload or {}))

    def fail(self, exc: BaseException) -> None:
        """Tells the other ranks this one is stopping; never raises (it runs while handling an error)."""
        if not self.distributed:
            return
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        try:
            self.store.set(f"error/{self.rank}", f"{type(exc).__name__}: {text}")
            self.store.add("errors", 1)
        except Exception:
            pass

    def wait(self, phase: str, ranks=None) -> list[dict]:
        """Waits until every rank in ``ranks`` (default all) posted ``phase``; returns their payloads.
        Raises DistributedError as soon as any rank reports an error, or when a rank we wait for has
        not moved its heartbeat for ``timeout_s`` seconds."""
        ranks = list(range(self.world_size)) if ranks is None else list(ranks)
        if not self.distributed:
            return [{}]
        keys = [f"{phase}/{r}" for r in ranks]
        while True:
            self.heartbeat()  # waiting is alive: whoever waits on this rank must not declare it lost
            self._raise_on_errors()
            if self._call(self.store.check, keys):
                return [json.loads(self._call(self.store.get, k)) for k in keys]
            now = time.monotonic()
            for r in ranks:
                if r == self.rank or self._call(self.store.check, [f"{phase}/{r}"]):
                    continue
                beat = self._call(self.store.add, f"hb/{r}", 0)
                last, since = self._seen.get(r, (None, now))
                if beat != last:
                    self._seen[r] = (beat, now)
                elif now - since > self.timeout_s:
                    raise DistributedError(
                        f"rank {r} made no progress for {self.timeout_s:.0f} s while rank {self.rank} waited "
                        f"for it ({phase}): it crashed or hangs; see its log, then rerun with --resume "
                        f"(raise {ENV_TIMEOUT} if a sampler call legitimately takes longer)")
            time.sleep(self.poll_s)

    def _raise_on_errors(self) -> None:
        if self._call(self.store.add, "errors", 0) == 0:
            return
        errors = [(r, self._call(self.store.get, f"error/{r}").decode()) for r in range(self.world_size)
                  if r != self.rank and self._call(self.store.check, [f"error/{r}"])]
        if not errors:
            return
        # name the root cause, not a rank that only stopped because of it
        r, msg = next((e for e in errors if not e[1].startswith(DistributedError.__name__)), errors[0])
        raise DistributedError(f"rank {r} failed ({msg}); rank {self.rank} stops too: fix it and rerun with --resume")

    def _call(self, fn, *args):
        try:
            return fn(*args)
        except DistributedError:
            raise
        except Exception as exc:  # the store's host (rank 0 or torchrun's agent) is gone
            raise DistributedError(f"rank {self.rank} lost the rendezvous store ({type(exc).__name__}): "
                                   "another rank or torchrun exited; rerun with --resume") from None

    def close(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


# ---- setup ----------------------------------------------------------------------------------
def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer: launch with torchrun") from None


def _timeout_s() -> float:
    value = os.environ.get(ENV_TIMEOUT, "")
    try:
        out = float(value) if value else DEFAULT_TIMEOUT_S
    except ValueError:
        raise ValueError(f"{ENV_TIMEOUT}={value!r} must be a number of seconds") from None
    if not out > 0:
        raise ValueError(f"{ENV_TIMEOUT} must be > 0 seconds, got {value}")
    return out


def rank_device(device: str, local_rank: int, world_size: int) -> str:
    """The device of this rank: cuda:LOCAL_RANK for auto/cuda under torchrun."""
    from fastpass.screen.loading import resolve_device

    dev = resolve_device(device)
    if world_size <= 1 or dev == "cpu":
        return dev
    if dev != "cuda":
        raise ValueError(f"--device {device} pins one GPU, but under torchrun each rank takes cuda:LOCAL_RANK: "
                         "pass --device cuda (or auto)")
    import torch

    if local_rank >= torch.cuda.device_count():
        raise ValueError(f"LOCAL_RANK {local_rank} has no GPU ({torch.cuda.device_count()} visible): launch at most "
                         "that many processes per node")
    return f"cuda:{local_rank}"


def init(device: str = "auto") -> tuple[Shard, str]:
    """(shard, device) for this process. Outside torchrun (no WORLD_SIZE, or 1) the whole run is
    one shard; otherwise joins the process group: NCCL on GPU, gloo on CPU."""
    world = _env_int("WORLD_SIZE", 1)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    local_world = _env_int("LOCAL_WORLD_SIZE", world)
    if world <= 1:
        return Shard(), rank_device(device, 0, 1)
    if not 0 <= rank < world:
        raise ValueError(f"RANK={rank} is outside WORLD_SIZE={world}: launch with torchrun")
    dev = rank_device(device, local_rank, world)
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    timeout_s = _timeout_s()
    timeout = timedelta(seconds=timeout_s)
    if dev.startswith("cuda"):
        torch.cuda.set_device(torch.device(dev))
    store, rank, world = next(dist.rendezvous("env://", rank=rank, world_size=world, timeout=timeout))
    dist.init_process_group("nccl" if dev.startswith("cuda") else "gloo", store=store, rank=rank,
                            world_size=world, timeout=timeout)
    # torchrun keeps its store across restarts: key this attempt's coordination apart
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    shard = Shard(rank, world, local_rank, max(1, local_world), dist.PrefixStore(f"fastpass/screen/{attempt}", store),
                  timeout_s)
    shard.heartbeat()
    return shard, dev


def hold_out_dir(out_dir: str, shard: Shard) -> FolderLock:
    """Locks ``out_dir`` for this run: rank 0 (or the only process) takes the folder lock first,
    then every other rank its own rank lock (see ``fastpass.screen.lock``). A rank that finds the
    folder taken raises; the CLI posts that error, so the other ranks stop instead of waiting."""
    if shard.rank == 0:
        lock = acquire(out_dir, 0)
        shard.post("locked")
        return lock
    shard.wait("locked", ranks=[0])
    return acquire(out_dir, shard.rank)


# ---- samples files ----------------------------------------------------------------------------
def sample_files(out_dir: str) -> list[str]:
    files = [os.path.join(out_dir, SAMPLES_FILE)] + sorted(glob.glob(os.path.join(out_dir, RANK_FILE_GLOB)))
    return [f for f in files if os.path.isfile(f)]


def check_out_dir(out_dir: str, resume: bool) -> None:
    """Before the model loads: results already in ``out_dir`` need --resume (checked again, with the
    rows themselves, once the run holds the folder)."""
    if resume or not os.path.isdir(out_dir):
        return
    for path in sample_files(out_dir):
        if os.path.getsize(path) > 0:
            raise ScreenError(f"{path} already holds results: pass --resume (resume=True) to continue that run, "
                              "or choose another --out folder")


def previous_rows(out_dir: str, fingerprint: str, own_path: str, resume: bool) -> dict[int, dict]:
    """Finished problems in every samples file of ``out_dir`` except this rank's own (which its
    SampleStore loads and repairs). Read only: other ranks may be appending to theirs."""
    done: dict[int, dict] = {}
    for path in sample_files(out_dir):
        if os.path.abspath(path) == os.path.abspath(own_path) or os.path.getsize(path) == 0:
            continue
        if not resume:
            raise ScreenError(f"{path} already holds results: pass --resume (resume=True) to continue that run, "
                              "or choose another --out folder")
        for index, row in read_rows(path, fingerprint).items():
            done.setdefault(index, row)
    return done


def merge_samples(out_dir: str, fingerprint: str) -> dict[int, dict]:
    """Every samples file of ``out_dir`` folded into samples.jsonl in problem order (written to a
    temporary file and renamed, so a crash leaves the old files intact); the per-rank files are
    then removed. Returns the rows by problem index."""
    rows: dict[int, dict] = {}
    for path in sample_files(out_dir):
        for index, row in read_rows(path, fingerprint).items():
            rows.setdefault(index, row)
    target = os.path.join(out_dir, SAMPLES_FILE)
    text = "".join(json.dumps(public(rows[i]), ensure_ascii=False) + "\n" for i in sorted(rows))
    atomic_write(target, lambda fh: fh.write(text.encode("utf-8")),
                 "every finished problem is kept in the samples files")
    for path in glob.glob(os.path.join(out_dir, RANK_FILE_GLOB)):
        os.remove(path)
    return rows


def merge_stats(per_rank: list[dict]) -> dict:
    """Throughput of the whole run: counts add up; the ranks run at once, so the time is the slowest one's."""
    out = {k: sum(int(s.get(k, 0)) for s in per_rank) for k in _INT_STATS}
    out["seconds"] = max(float(s.get("seconds", 0.0)) for s in per_rank)
    out["ranks"] = len(per_rank)
    return out


def gather_results(shard: Shard, out_dir, fingerprint: str, stats: dict, indices):
    """After this rank's problems are done: rank 0 waits for every rank, merges the samples files
    and returns (rows by index, merged stats); other ranks wait for rank 0's report and return None."""
    if out_dir is None:
        raise ScreenError("data-parallel screening needs an output folder (--out): the ranks exchange "
                          "samples through it")
    shard.post("sampled", stats)
    if shard.rank != 0:
        shard.wait("reported", ranks=[0])
        return None
    per_rank = shard.wait("sampled")
    rows = merge_samples(str(out_dir), fingerprint)
    missing = [i for i in indices if i not in rows]
    if missing:
        raise ScreenError(f"{len(missing)} problems (first: index {missing[0]}) finished on their rank but are not "
                          f"in {out_dir}: --out must be a folder every rank sees (a shared filesystem)")
    return rows, merge_stats(per_rank)
