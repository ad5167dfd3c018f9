"""Fault injection for `fastpass screen`: two runs on one folder, a full disk (a real tiny tmpfs
where this machine lets us mount one, and an injected ENOSPC/EIO everywhere), swapped data on
resume, damaged samples.jsonl rows, and random SIGKILLs followed by --resume. After each fault:
either the right counts or a one-line error (exit 2) naming the path and the fix, and nothing
finished is lost."""
from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fastpass.cli import main as cli_main
from fastpass.screen import ScreenError, screen
from fastpass.screen import lock as lockmod
from fastpass.screen import store as storemod

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_screen import _rows, _tiny_model, _tokenizer, _write_jsonl  # noqa: E402  (shared builders)

REPO = Path(__file__).resolve().parents[1]
ARGS = ["--preset", "r1", "-n", "16", "--k", "1,4,16", "--max-new-tokens", "8", "--seed", "7", "--device", "cpu",
        "--no-progress"]
KW = dict(n_samples=16, ks=(1, 4, 16), max_new_tokens=8, seed=7, preset="r1", progress=False)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # shared 2-core machine: one busy thread per process
    tok = _tokenizer()
    model = _tiny_model(tok)
    folder = tmp_path_factory.mktemp("tiny-model")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    yield model, tok, folder
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return _write_jsonl(tmp_path_factory.mktemp("data") / "sums.jsonl", _rows(24))


@pytest.fixture(scope="module")
def reference(tiny, data):
    """Counts of one uninterrupted run (no output folder at all)."""
    model, tok, folder = tiny
    return screen(model, tok, str(data), model_name=str(folder), **KW).c.tolist()


def _cli(capsys, *args):
    code = cli_main(["screen", *args])
    return code, capsys.readouterr().err.strip()


def _popen(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("FASTPASS_DEBUG", None)
    return subprocess.Popen([sys.executable, "-m", "fastpass", "screen", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _lines(path: Path) -> list[dict]:
    text = path.read_text()
    assert text == "" or text.endswith("\n"), "torn last line"
    return [json.loads(line) for line in text.splitlines()]


def _counts(rows: list[dict], total: int = 24) -> list[int]:
    """c of every problem in index order; each problem exactly once (lines come in finishing order)."""
    assert sorted(r["index"] for r in rows) == list(range(total))
    return [r["c"] for r in sorted(rows, key=lambda r: r["index"])]


def assert_one_line_error(code, err, *patterns):
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for p in patterns:
        assert p in err, (p, err)


# ---- two runs on one folder ---------------------------------------------------------------------
@pytest.mark.slow
def test_second_run_on_a_busy_folder_is_refused_naming_the_holder(tiny, tmp_path):
    _, _, folder = tiny
    out = tmp_path / "out"
    big = _write_jsonl(tmp_path / "big.jsonl", _rows(3000))  # long enough to outlast the second run's start
    args = ["--model", str(folder), "--data", str(big), "--out", str(out), *ARGS]
    first = _popen(*args)
    try:
        t0 = time.time()
        while not (out / "samples.jsonl").exists() or not (out / "samples.jsonl").read_text():
            assert first.poll() is None, first.communicate()
            assert time.time() - t0 < 180, "first run made no progress"
            time.sleep(0.05)
        second = _popen(*args, "--resume")
        _, err = second.communicate(timeout=180)
        assert first.poll() is None, "the first run ended before the second one checked the folder"
        assert_one_line_error(second.returncode, err.strip(), f"pid {first.pid}", str(out), "another --out")
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate()
    complete = (out / "samples.jsonl").read_bytes().rpartition(b"\n")[0]
    indices = [json.loads(line)["index"] for line in complete.splitlines()]
    assert len(set(indices)) == len(indices) and set(indices) <= set(range(3000))  # only the first run wrote,
    # each problem once (in the order its samples finished)


def test_lock_is_released_on_return_on_error_and_on_kill(tiny, data, tmp_path):
    model, tok, folder = tiny
    out = tmp_path / "out"
    with lockmod.acquire(str(out)):
        with lockmod.acquire(str(out)):  # re-entrant in one process (CLI first, then fp.screen)
            assert lockmod.held(str(out))
        assert lockmod.held(str(out))
    assert not lockmod.held(str(out))
    with pytest.raises(ScreenError, match="n must be >= 1"):
        screen(model, tok, str(data), out_dir=out, **dict(KW, n_samples=0))
    assert not lockmod.held(str(out))
    # another process holds the folder: refused with its pid; once it is killed, the folder is free
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from fastpass.screen.lock import acquire; "
                               f"acquire({str(out)!r}); print('held', flush=True); time.sleep(600)"],
                              cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ScreenError, match=f"in use by another fastpass screen run \\(pid {holder.pid}\\)"):
            screen(model, tok, str(data), out_dir=out, limit=1, **KW)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    rep = screen(model, tok, str(data), out_dir=out, limit=1, **KW)
    assert len(rep.ids) == 1


def test_a_live_rank_of_an_earlier_run_keeps_the_folder(tmp_path):
    """A data-parallel rank whose rank 0 died may still append to its samples.rank{r}.jsonl: a new
    run must not start in that folder until it is gone."""
    out = tmp_path / "out"
    rank1 = subprocess.Popen([sys.executable, "-c", "import time; from fastpass.screen.lock import acquire; "
                              f"acquire({str(out)!r}, rank=1); print('held', flush=True); time.sleep(600)"],
                             cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert rank1.stdout.readline().strip() == "held"
        with pytest.raises(ScreenError, match=f"pid {rank1.pid}, a data-parallel rank"):
            lockmod.acquire(str(out))
        assert not lockmod.held(str(out))
    finally:
        rank1.send_signal(signal.SIGKILL)
        rank1.wait()
    lockmod.acquire(str(out)).release()


# ---- a full disk ------------------------------------------------------------------------------
class _Os:
    """The os module as the samples store sees it, with some calls replaced."""

    def __init__(self, **replaced):
        self.__dict__.update(replaced)

    def __getattr__(self, name):
        return getattr(os, name)


def _fail_nth_write(monkeypatch, nth: int, code: int = errno.ENOSPC, partial: bool = True):
    """os.write in the store fails on its nth call, after writing half the line when ``partial``."""
    calls = {"n": 0}
    real = os.write

    def write(fd, data):
        calls["n"] += 1
        if calls["n"] == nth:
            if partial:
                real(fd, bytes(data[:len(data) // 2]))
            raise OSError(code, os.strerror(code))
        return real(fd, data)

    monkeypatch.setattr(storemod, "os", _Os(write=write))


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO])
def test_injected_write_failure_keeps_whole_lines_and_resume_finishes(tiny, data, reference, tmp_path, capsys,
                                                                      monkeypatch, code):
    _, _, folder = tiny
    out = tmp_path / "out"
    args = ["--model", str(folder), "--data", str(data), "--out", str(out), *ARGS]
    _fail_nth_write(monkeypatch, 5, code)  # the 5th line is torn mid-write by the "disk"
    err_code, err = _cli(capsys, *args)
    assert_one_line_error(err_code, err, os.strerror(code), str(out / "samples.jsonl"), "--resume")
    assert ("free space" in err) == (code == errno.ENOSPC)
    assert len(_lines(out / "samples.jsonl")) == 4  # cut back to the last complete line
    assert not (out / "report.json").exists()
    monkeypatch.undo()
    assert _cli(capsys, *args, "--resume")[0] == 0
    rows = _lines(out / "samples.jsonl")
    assert _counts(rows) == reference


def test_injected_fsync_failure_is_cut_back_too(tmp_path, monkeypatch):
    store = storemod.SampleStore(str(tmp_path), "fp", resume=False)
    store.append({"index": 0, "id": "a", "n": 2, "c": 1})
    real = os.fsync
    fails = {"n": 0}

    def fsync(fd):
        if fails["n"] == 0:
            fails["n"] += 1
            raise OSError(errno.EIO, "Input/output error")
        return real(fd)

    monkeypatch.setattr(storemod, "os", _Os(fsync=fsync))
    with pytest.raises(OSError, match="Input/output error while writing .*samples.jsonl"):
        store.append({"index": 1, "id": "b", "n": 2, "c": 2})
    store.append({"index": 2, "id": "c", "n": 2, "c": 0})
    store.close()
    assert [r["index"] for r in _lines(tmp_path / "samples.jsonl")] == [0, 2]


def test_report_files_are_replaced_whole_or_not_at_all(tiny, data, tmp_path, monkeypatch):
    """A failure while the plot is written leaves the previous passk.png (never a 0-byte one), no
    temporary file, and an error naming the file."""
    import matplotlib.figure

    model, tok, _ = tiny
    out = tmp_path / "out"
    screen(model, tok, str(data), out_dir=out, limit=2, **KW)
    before = {name: (out / name).read_bytes() for name in ("report.json", "report.md", "passk.png")}
    real = matplotlib.figure.Figure.savefig

    def full_disk(self, fname, *a, **k):
        if hasattr(fname, "write"):
            fname.write(b"\x89PNG half")
        else:
            with open(fname, "wb") as fh:
                fh.write(b"\x89PNG half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", full_disk)
    with pytest.raises(OSError, match=r"No space left on device while writing .*passk\.png"):
        screen(model, tok, str(data), out_dir=out, limit=2, resume=True, **KW)
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", real)
    assert (out / "passk.png").read_bytes() == before["passk.png"]
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".") and "tmp" in p.name) == []


@pytest.fixture
def tiny_disk(tmp_path):
    """A 256 KiB tmpfs, when this machine lets the tests mount one (root, no container policy)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or proc.returncode}); the injected "
                    "ENOSPC tests cover the full disk")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_real_full_disk_then_resume_gives_the_uninterrupted_counts(tiny, data, reference, tiny_disk, capsys):
    _, _, folder = tiny
    out = tiny_disk / "out"
    out.mkdir()
    filler = tiny_disk / "filler"
    free = os.statvfs(tiny_disk).f_bavail * os.statvfs(tiny_disk).f_frsize
    filler.write_bytes(b"\0" * (free - 3 * 4096))  # room for the lock file and a few samples lines
    args = ["--model", str(folder), "--data", str(data), "--out", str(out), "--save-completions", *ARGS]
    code, err = _cli(capsys, *args)
    assert_one_line_error(code, err, "No space left on device while writing", str(out / "samples.jsonl"), "free space")
    kept = _lines(out / "samples.jsonl")
    assert 1 <= len(kept) < 24
    code, err = _cli(capsys, *args, "--resume")  # still full: same error, still whole lines, nothing lost
    assert_one_line_error(code, err, "No space left on device")
    assert len(_lines(out / "samples.jsonl")) >= len(kept)
    for name in ("report.json", "report.md", "passk.png"):
        assert not (out / name).exists() or (out / name).stat().st_size > 0, name
    filler.unlink()
    code, err = _cli(capsys, *args, "--resume")
    assert code == 0, err
    rows = _lines(out / "samples.jsonl")
    assert _counts(rows) == reference
    assert all((out / name).stat().st_size > 0 for name in ("report.json", "report.md", "passk.png"))


# ---- resume checks ------------------------------------------------------------------------------
def test_swapped_data_or_changed_gold_on_resume_is_refused_naming_the_problem(tiny, tmp_path, capsys):
    _, _, folder = tiny
    a = _write_jsonl(tmp_path / "a.jsonl", [{"id": "france", "question": "What is 1 + 2 ?", "answer": "3"},
                                            {"id": "uk", "question": "What is 2 + 2 ?", "answer": "4"}])
    b = _write_jsonl(tmp_path / "b.jsonl", [{"id": "egypt", "question": "What is 3 + 3 ?", "answer": "6"},
                                            {"id": "17+25", "question": "What is 1 + 1 ?", "answer": "2"}])
    gold = _write_jsonl(tmp_path / "gold.jsonl", [{"id": "france", "question": "What is 1 + 2 ?", "answer": "9"},
                                                  {"id": "uk", "question": "What is 2 + 2 ?", "answer": "4"}])
    question = _write_jsonl(tmp_path / "q.jsonl", [{"id": "france", "question": "What is 1 + 3 ?", "answer": "3"},
                                                   {"id": "uk", "question": "What is 2 + 2 ?", "answer": "4"}])
    more = _write_jsonl(tmp_path / "more.jsonl", [{"id": "france", "question": "What is 1 + 2 ?", "answer": "3"},
                                                  {"id": "uk", "question": "What is 2 + 2 ?", "answer": "4"},
                                                  {"id": "new", "question": "What is 4 + 4 ?", "answer": "8"}])
    out = tmp_path / "out"
    base = ["--model", str(folder), "--out", str(out), *ARGS]
    assert _cli(capsys, *base, "--data", str(a))[0] == 0
    before = (out / "samples.jsonl").read_bytes()
    for path, why in [(b, "holds problem 'france' where the data now has 'egypt'"),
                      (gold, "question, gold or prompt changed"), (question, "question, gold or prompt changed")]:
        code, err = _cli(capsys, *base, "--data", str(path), "--resume")
        assert_one_line_error(code, err, "samples.jsonl:1", why, "cannot resume problem")
        assert (out / "samples.jsonl").read_bytes() == before  # nothing rewritten, nothing lost
    code, err = _cli(capsys, *base, "--data", str(more), "--resume")  # a problem added at the end is fine
    assert code == 0, err
    assert [r["id"] for r in _lines(out / "samples.jsonl")] == ["france", "uk", "new"]


@pytest.mark.parametrize("bad, why", [("[1, 2]\n", "a JSON list, not an object"),
                                      ('{"id": "p0", "n": 16, "c": 3}\n', "'index' missing"),
                                      ('{"index": "0", "id": "p0", "n": 16, "c": 3}\n', "is not a non-negative"),
                                      ('{"index": 0, "id": "p0", "n": 4, "c": 9}\n', "c = 9, n = 4"),
                                      ("{oops\n", "malformed JSON"),
                                      ("[" * 100000 + "\n", "nested too deeply")],
                         ids=["list", "no-index", "str-index", "c>n", "malformed", "deep"])
def test_bad_samples_rows_give_one_line_naming_the_line(tiny, data, tmp_path, capsys, bad, why):
    _, _, folder = tiny
    out = tmp_path / "out"
    out.mkdir()
    (out / "samples.jsonl").write_text(bad)
    code, err = _cli(capsys, "--model", str(folder), "--data", str(data), "--out", str(out), "--limit", "1",
                     "--resume", *ARGS)
    assert_one_line_error(code, err, f"{out / 'samples.jsonl'}:1: not a samples line", why, "remove that line")
    assert (out / "samples.jsonl").read_text() == bad  # refused before anything was written: nothing lost


# ---- random kills -------------------------------------------------------------------------------
@pytest.mark.slow
def test_random_sigkills_then_resume_give_the_uninterrupted_counts(tiny, data, reference, tmp_path):
    _, _, folder = tiny
    out = tmp_path / "out"
    args = ["--model", str(folder), "--data", str(data), "--out", str(out), "--resume", *ARGS]
    rng = random.Random(12)
    samples = out / "samples.jsonl"
    def count():  # complete lines only: the run may be appending right now
        return samples.read_bytes().count(b"\n") if samples.exists() else 0

    for _ in range(4):
        have = count()
        proc = _popen(*args)
        t0 = time.time()
        # kill at a random moment: some while Python starts or the model loads, most mid-sampling
        if rng.random() < 0.25:
            time.sleep(rng.uniform(0.1, 2.0))
        else:
            while count() < have + 1 and proc.poll() is None:
                assert time.time() - t0 < 180, "no progress"
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        complete = samples.read_bytes().rpartition(b"\n")[0] if samples.exists() else b""
        indices = [json.loads(line)["index"] for line in complete.splitlines()]
        assert len(set(indices)) == len(indices)  # never a problem twice
    proc = _popen(*args)
    stdout, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    rows = _lines(samples)
    assert _counts(rows) == reference
