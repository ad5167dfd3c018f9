"""Data-parallel screening: `python -m torch.distributed.run --nproc_per_node 2 -m fastpass screen`
with two gloo ranks on CPU gives the counts of a one-process run, merges into one samples.jsonl,
resumes per rank (also from a run with another world size), and a failing rank stops every rank
with a non-zero exit instead of a hang. The store-based coordination is also tested in-process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from fastpass.screen import screen
from fastpass.screen.distributed import DistributedError, Shard, merge_stats, previous_rows
from fastpass.screen.store import SampleStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_screen import _rows, _tiny_model, _tokenizer, _write_jsonl  # noqa: E402  (shared fixtures' builders)

REPO = Path(__file__).resolve().parents[1]
PROBLEMS = 7  # odd: the ranks get 4 and 3 problems
SETTINGS = dict(n_samples=8, ks=(1, 8), max_new_tokens=8, seed=5, preset="r1")
CLI_SETTINGS = ["--preset", "r1", "-n", "8", "--k", "1,8", "--max-new-tokens", "8", "--seed", "5", "--device", "cpu",
                "--no-progress"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # shared 2-core machine: one busy thread per process
    tok = _tokenizer()
    model = _tiny_model(tok)
    folder = tmp_path_factory.mktemp("tiny-model")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    data = _write_jsonl(tmp_path_factory.mktemp("data") / "sums.jsonl", _rows(PROBLEMS))
    ref = tmp_path_factory.mktemp("one-process")
    # the CLI names the model by its folder: same name, same run fingerprint in samples.jsonl
    rep = screen(model, tok, str(data), out_dir=ref, progress=False, model_name=str(folder), **SETTINGS)
    yield folder, data, rep, ref
    torch.set_num_threads(before)


def _torchrun(model_dir, data, out, *extra, timeout=150):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "fastpass",
           "screen", "--model", str(model_dir), "--data", str(data), "--out", str(out), *CLI_SETTINGS, *extra]
    env = dict(os.environ, OMP_NUM_THREADS="1", FASTPASS_DIST_TIMEOUT="60")
    env.pop("FASTPASS_DEBUG", None)
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_two_gloo_ranks_equal_one_process(tiny, tmp_path):
    model_dir, data, rep, ref = tiny
    out = tmp_path / "out"
    proc = _torchrun(model_dir, data, out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _lines(out / "samples.jsonl")
    assert [r["index"] for r in rows] == list(range(PROBLEMS))  # merged, in problem order, each once
    assert [r["c"] for r in rows] == rep.c.tolist()
    # the whole rows (grades, lengths, finish reasons) equal the one-process run's, not only the counts
    assert rows == sorted(_lines(ref / "samples.jsonl"), key=lambda r: r["index"])  # one process: finish order
    assert not list(out.glob("samples.rank*")) and not list(out.glob("*.merging"))
    report = json.loads((out / "report.json").read_text())
    assert [p["c"] for p in report["per_problem"]] == rep.c.tolist()
    assert report["verdict"] == json.loads((ref / "report.json").read_text())["verdict"]
    assert report["throughput"]["samples"] == PROBLEMS * 8 and report["throughput"]["ranks"] == 2
    assert report["throughput"]["problems_sampled"] == PROBLEMS
    assert report["config"]["ranks"] == 2 and report["config"]["device"].startswith("2 ranks")
    assert proc.stdout.count(rep.verdict.decision + ": pass@1") == 1  # only rank 0 prints the verdict


def test_resume_per_rank_and_from_another_world_size(tiny, tmp_path):
    """Rank files of a crashed run (one with a torn tail) plus a file of rank 2 from an earlier
    3-rank run: each rank skips what any file holds, and the merge gives the one-process counts."""
    model_dir, data, rep, ref = tiny
    done = {r["index"]: json.dumps(r) + "\n" for r in _lines(ref / "samples.jsonl")}
    out = tmp_path / "out"
    out.mkdir()
    (out / "samples.rank0.jsonl").write_text(done[0] + done[2])
    (out / "samples.rank1.jsonl").write_text(done[1] + done[3][:25])  # problem 3 was being written
    (out / "samples.rank2.jsonl").write_text(done[5])  # 5 % 3 == 2: rank 2 of a 3-rank run
    proc = _torchrun(model_dir, data, out, "--resume")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _lines(out / "samples.jsonl")
    assert [r["index"] for r in rows] == list(range(PROBLEMS))
    assert [r["c"] for r in rows] == rep.c.tolist()
    assert not list(out.glob("samples.rank*"))
    tp = json.loads((out / "report.json").read_text())["throughput"]
    assert tp["problems_resumed"] == 4 and tp["problems_sampled"] == 3  # 0, 1, 2, 5 kept; 3, 4, 6 sampled


def test_a_failing_rank_stops_every_rank(tiny, tmp_path):
    model_dir, data, _, _ = tiny
    out = tmp_path / "out"
    (out / "samples.rank1.jsonl").mkdir(parents=True)  # only rank 1 trips over its samples file
    t0 = time.monotonic()
    proc = _torchrun(model_dir, data, out, timeout=120)
    assert proc.returncode != 0
    assert time.monotonic() - t0 < 100  # no wait for FASTPASS_DIST_TIMEOUT (60 s): the error was posted
    assert "rank 1/2" in proc.stderr  # rank 1's own one-line error
    assert "rank 1 failed" in proc.stderr  # rank 0 names the rank that failed
    assert not (out / "samples.jsonl").exists()


def test_single_process_resume_folds_in_rank_files(tiny, tmp_path):
    model_dir, data, rep, ref = tiny
    from fastpass.screen.loading import load_model

    model, tok, _ = load_model(str(model_dir), device="cpu", progress=False)
    done = {r["index"]: json.dumps(r) + "\n" for r in _lines(ref / "samples.jsonl")}
    (tmp_path / "samples.rank1.jsonl").write_text(done[1] + done[3])
    got = screen(model, tok, str(data), out_dir=tmp_path, resume=True, progress=False, model_name=str(model_dir),
                 **SETTINGS)
    assert got.c.tolist() == rep.c.tolist() and got.throughput["problems_resumed"] == 2
    assert [r["index"] for r in _lines(tmp_path / "samples.jsonl")] == list(range(PROBLEMS))
    assert not list(tmp_path.glob("samples.rank*"))


# ---- coordination, in-process: two Shards over one store ----------------------------------------
def _pair(timeout_s=30.0):
    store = dist.HashStore()
    return [Shard(rank=r, world_size=2, store=store, timeout_s=timeout_s, poll_s=0.01) for r in range(2)]


def test_shards_partition_the_problems():
    for world in (1, 2, 3, 8):
        owners = [[r for r in range(world) if Shard(rank=r, world_size=world).owns(i)] for i in range(50)]
        assert all(len(o) == 1 for o in owners)
        counts = [sum(o == [r] for o in owners) for r in range(world)]
        assert max(counts) - min(counts) <= 1


def test_wait_returns_every_ranks_payload():
    a, b = _pair()
    b.post("sampled", {"tokens": 5})
    a.post("sampled", {"tokens": 7})
    assert a.wait("sampled") == [{"tokens": 7}, {"tokens": 5}]


def test_error_on_one_rank_releases_the_waiting_rank():
    a, b = _pair()
    threading.Timer(0.2, lambda: b.fail(OSError("disk full\nsecond line"))).start()
    t0 = time.monotonic()
    with pytest.raises(DistributedError, match=r"rank 1 failed \(OSError: disk full\)"):
        a.wait("sampled")
    assert time.monotonic() - t0 < 5


def test_silent_rank_is_declared_lost_after_the_timeout_but_a_beating_one_is_not():
    a, b = _pair(timeout_s=1.0)

    def beat():  # rank 1 alive and making progress for 3 s, then posts
        for _ in range(60):
            b.heartbeat()
            time.sleep(0.05)
        b.post("sampled")

    threading.Thread(target=beat).start()
    a.post("sampled")
    assert len(a.wait("sampled")) == 2  # longer than the timeout in total, but never silent for 1 s
    silent, _ = _pair(timeout_s=0.5)  # fresh: its clock for rank 1 starts at the first look
    t0 = time.monotonic()
    with pytest.raises(DistributedError, match="rank 1 made no progress"):
        silent.wait("reported", ranks=[1])
    assert 0.5 <= time.monotonic() - t0 < 5


def test_root_cause_named_over_follow_on_errors():
    store = dist.HashStore()
    shards = [Shard(rank=r, world_size=3, store=store, poll_s=0.01) for r in range(3)]
    shards[2].fail(RuntimeError("CUDA error: device-side assert"))
    shards[0].fail(DistributedError("rank 2 failed (...)"))
    with pytest.raises(DistributedError, match=r"rank 2 failed \(RuntimeError: CUDA error"):
        shards[1].wait("sampled")


def test_merge_stats_adds_counts_and_takes_the_slowest_time():
    got = merge_stats([{"tokens": 10, "samples": 4, "seconds": 2.0, "problems_sampled": 1, "problems_resumed": 0,
                        "oom_retries": 1},
                       {"tokens": 6, "samples": 4, "seconds": 3.5, "problems_sampled": 1, "problems_resumed": 2,
                        "oom_retries": 0}])
    assert got == {"tokens": 16, "samples": 8, "seconds": 3.5, "problems_sampled": 2, "problems_resumed": 2,
                   "oom_retries": 1, "ranks": 2}


def test_previous_rows_reads_other_files_without_touching_them(tmp_path):
    store = SampleStore(str(tmp_path), "fp", resume=True, filename="samples.rank1.jsonl")
    store.append({"index": 1, "id": "b", "n": 2, "c": 1})
    store.close()
    torn = (tmp_path / "samples.rank1.jsonl").read_text() + '{"index": 3, "id"'
    (tmp_path / "samples.rank1.jsonl").write_text(torn)  # rank 1 is mid-write
    own = str(tmp_path / "samples.rank0.jsonl")
    assert list(previous_rows(str(tmp_path), "fp", own, resume=True)) == [1]
    assert (tmp_path / "samples.rank1.jsonl").read_text() == torn  # only its owner may cut a torn tail
    with pytest.raises(Exception, match="--resume"):
        previous_rows(str(tmp_path), "fp", own, resume=False)
    with pytest.raises(Exception, match="other settings"):
        previous_rows(str(tmp_path), "other-fingerprint", own, resume=True)


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs (one NCCL rank each)")
def test_two_nccl_ranks_equal_one_gpu_process(tiny, tmp_path):
    """Each rank on its own GPU (cuda:LOCAL_RANK), NCCL group; float32 so that the per-rank batch
    sizes cannot change a logit enough to flip a draw."""
    model_dir, data, _, _ = tiny
    from fastpass.screen.loading import load_model

    model, tok, name = load_model(str(model_dir), dtype="float32", device="cuda:0", progress=False)
    one = screen(model, tok, str(data), out_dir=tmp_path / "one", progress=False, model_name=name, **SETTINGS)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "fastpass",
           "screen", "--model", str(model_dir), "--data", str(data), "--out", str(tmp_path / "dp"),
           *[a for a in CLI_SETTINGS if a not in ("--device", "cpu")], "--device", "cuda", "--dtype", "float32"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, FASTPASS_DIST_TIMEOUT="120"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _lines(tmp_path / "dp" / "samples.jsonl")
    assert [r["c"] for r in rows] == one.c.tolist()
    report = json.loads((tmp_path / "dp" / "report.json").read_text())
    assert report["config"]["ranks"] == 2 and "cuda:0" in report["config"]["device"]
