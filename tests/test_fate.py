"""The per-problem fate table: numbers against fp.pass_at_k / fp.predict_post_rl / fp.verdict and
the seed chapter's walkthrough, bands, ordering, the lift summary, and its place in the screen's
report (report.json, report.md, fate.png, whatif.html) — also through a real `fastpass screen` run
with --gamma-from on a tiny model."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

import fastpass as fp
from fastpass.fate import BANDS, fate_table, md_cell
from fastpass.screen import ScreenReport

# the seed chapter's walkthrough: 4 prompts, 128 samples each
WALK_IDS = ["1 (easy)", "2 (medium)", "3 (hard)", "4 (very hard)"]
WALK_C = [92, 18, 3, 0]


def test_walkthrough_bands_and_numbers_are_the_library_s():
    f = fate_table(WALK_IDS, [128] * 4, WALK_C, K_train=64, gamma=0.7)
    assert list(f.band) == ["easy", "within reach", "hard", "wall"]
    n, c = np.full(4, 128), np.array(WALK_C)
    # K_train <= n: pass@64 is the unbiased estimator itself
    assert f.pass_k == pytest.approx(fp.pass_at_k(n, c, 64), abs=1e-15)  # tiers may differ in the last bit
    assert not f.extrapolated.any()
    assert f.p1 == pytest.approx(c / 128, abs=0)
    # the mean of the per-problem predictions is fp.predict_post_rl's aggregate prediction
    curve = fp.pass_at_k_curve(n, c, ks=[1, 64])
    pred = fp.predict_post_rl(curve, K_train=64, gamma=0.7)
    assert f.after.mean() == pytest.approx(pred.value, abs=1e-12)
    assert f.after_low.mean() == pytest.approx(pred.low, abs=1e-12)
    assert f.after_high.mean() == pytest.approx(pred.high, abs=1e-12)
    # ... and fp.verdict's expected pass@1 at the same K_train
    assert f.after.mean() == pytest.approx(fp.verdict(curve, gamma=0.7, K_train=64).expected_pass1, abs=1e-12)
    # the chapter's story: the wall stays at 0, the easy problem has the least room
    assert f.after[3] == 0.0 and f.lift[3] == 0.0
    assert f.lift[0] < f.lift[1] and f.lift[0] < f.lift[2]


def test_beyond_n_the_plugin_extrapolation_equals_predict_post_rl_per_problem():
    c = np.array([0, 1, 3, 8, 15, 16])
    f = fate_table([f"q{i}" for i in range(6)], [16] * 6, c, K_train=64, gamma=0.8)
    assert f.extrapolated.all()
    pred = fp.predict_post_rl(c / 16, K_train=64, gamma=0.8)  # the seed's per-problem form
    np.testing.assert_allclose(f.after, pred.value, rtol=0, atol=1e-15)
    np.testing.assert_allclose(f.after_low, pred.low, rtol=0, atol=1e-15)
    np.testing.assert_allclose(f.after_high, pred.high, rtol=0, atol=1e-15)
    assert f.after[-1] == 1.0 and f.band[-1] == "easy"  # always solved: nothing left to gain


def test_mixed_n_uses_the_unbiased_estimate_where_it_exists():
    f = fate_table(["a", "b"], [128, 16], [10, 2], K_train=64)
    assert f.extrapolated.tolist() == [False, True]
    assert f.pass_k[0] == pytest.approx(fp.pass_at_k(128, 10, 64), abs=1e-15)
    assert f.pass_k[1] == pytest.approx(1 - (1 - 2 / 16) ** 64, abs=1e-15)


def test_bands_follow_the_configured_reach_and_summary_adds_up():
    rng = np.random.default_rng(0)
    n = np.full(300, 64)
    c = rng.binomial(64, rng.beta(0.6, 2.2, 300))
    f = fate_table([str(i) for i in range(300)], n, c, K_train=64, gamma=0.7, reach=(0.1, 0.3))
    p1 = c / 64
    want = np.where(c == 0, "wall", np.where(p1 > 0.3, "easy", np.where(p1 >= 0.1, "within reach", "hard")))
    assert list(f.band) == list(want)
    s = f.summary()
    assert sum(s[b]["problems"] for b in BANDS) == 300
    assert sum(s[b]["lift"] for b in BANDS) == pytest.approx(s["all"]["lift"], abs=1e-12)
    assert sum(s[b]["share_of_lift"] for b in BANDS) == pytest.approx(1.0, abs=1e-12)
    assert s["all"]["lift"] == pytest.approx(f.after.mean() - p1.mean(), abs=1e-12)
    assert s["wall"]["lift"] == 0.0
    # the chapter's point: with K_train = 64 RL's lift sits in the low-p1 bands, not the easy one
    assert s["within reach"]["lift"] + s["hard"]["lift"] > s["easy"]["lift"]


def test_rows_put_within_reach_first_then_by_lift():
    f = fate_table(["e", "w1", "h", "x", "w2"], [32] * 5, [30, 4, 1, 0, 10], K_train=64)
    rows = f.rows()
    assert [r["band"] for r in rows] == ["within reach", "within reach", "hard", "easy", "wall"]
    lifts = [r["lift"] for r in rows[:2]]
    assert lifts == sorted(lifts, reverse=True)
    assert {r["id"] for r in rows} == {"e", "w1", "h", "x", "w2"}


@pytest.mark.parametrize("bad, match", [
    (dict(reach=(0.4, 0.05)), "reach"), (dict(reach=(0, 0.4)), "reach"), (dict(reach="x"), "reach"),
    (dict(gamma=1.5), "gamma"), (dict(K_train=0), "K_train"), (dict(K_train=2.5), "K_train"),
])
def test_bad_arguments_are_one_clear_error(bad, match):
    with pytest.raises(ValueError, match=match):
        fate_table(["a"], [8], [3], **bad)


def test_bad_counts_are_refused():
    with pytest.raises(ValueError, match="exceeds"):
        fate_table(["a"], [8], [9])
    with pytest.raises(ValueError, match="ids"):
        fate_table(["a", "b"], [8], [3])


def test_markdown_escapes_ids_and_limits_rows():
    ids = ["a|b", "line\nbreak", "<script>x</script>", "`tick`"] + [f"p{i}" for i in range(50)]
    c = [3, 0, 5, 9] + [i % 16 for i in range(50)]
    f = fate_table(ids, [16] * len(ids), c)
    md = f.to_markdown(max_rows=100)
    assert "a\\|b" in md and "line break" in md and "&lt;script&gt;" in md and "<script>" not in md
    assert "\\`tick\\`" in md
    short = f.to_markdown(max_rows=10)
    rows = [l for l in short.splitlines() if l.startswith("| ") and " / 16 |" in l]
    assert len(rows) == 10
    assert "44 more in report.json" in short
    assert md_cell("x" * 100).endswith("…") and len(md_cell("x" * 100)) == 58
    # every table row has the header's number of cells (escaped pipes do not split a cell)
    table = [l for l in md.splitlines() if l.startswith("| ") and "/ 16" in l]
    assert all(len(re.split(r"(?<!\\)\|", l)) == 10 for l in table)


def test_calibration_object_is_accepted_as_gamma():
    cal = fp.calibrate(fp.example_runs())
    f = fate_table(["a"], [64], [5], gamma=cal)
    assert f.gamma == cal.gamma
    assert f.after[0] == pytest.approx(fate_table(["a"], [64], [5], gamma=cal.gamma).after[0], abs=0)


def test_report_carries_the_fate_table_and_writes_the_page(tmp_path):
    ids = [f"p{i}" for i in range(17)]
    c = [15, 14, 13, 11, 11, 10, 8, 8, 6, 4, 4, 4, 3, 1, 1, 0, 0]
    rep = ScreenReport.from_counts(ids, [16] * 17, c, ks=[1, 4, 16], config={"model": "m"}, reach=(0.05, 0.5))
    paths = rep.save(str(tmp_path))
    for name in ("report.json", "report.md", "passk.png", "fate.png", "whatif.html"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert paths["fate.png"].endswith("fate.png") and paths["whatif.html"].endswith("whatif.html")
    assert (tmp_path / "fate.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    d = json.loads((tmp_path / "report.json").read_text())
    want = fate_table(ids, [16] * 17, c, K_train=64, gamma=0.7, reach=(0.05, 0.5)).to_dict()
    assert d["fate"] == json.loads(json.dumps(want))
    assert d["fate"]["reach"] == [0.05, 0.5]
    # the fate table's total is the report's own post-RL prediction
    assert d["fate"]["summary"]["all"]["mean_p1_after"] == pytest.approx(d["post_rl"]["pass@1"]["value"], abs=1e-12)
    md = (tmp_path / "report.md").read_text()
    assert "## Per-problem fate after RL (γ = 0.7, K_train = 64)" in md
    assert "| within reach |" in md and "| wall | 2 |" in md and "(fate.png)" in md and "whatif.html" in md
    with pytest.raises(ValueError, match="reach"):
        ScreenReport.from_counts(ids, [16] * 17, c, reach=(0.5, 0.1))


@pytest.mark.slow
def test_cli_screen_with_gamma_from_writes_fate_and_page(tmp_path, capsys):
    """A real `fastpass screen` run (tiny fitted model, tests/test_screen.py's) with a calibration."""
    from test_screen import TEMPLATE, _rows, _tiny_model, _tokenizer, _write_jsonl

    import torch

    from fastpass.cli import main

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        tok = _tokenizer()
        model_dir = tmp_path / "model"
        _tiny_model(tok).save_pretrained(model_dir)
        tok.save_pretrained(model_dir)
        data = _write_jsonl(tmp_path / "sums.jsonl", _rows(6))
        cal = fp.calibrate(fp.example_runs())
        cal_path = cal.save(tmp_path / "cal.json")
        out = tmp_path / "run"
        args = ["screen", "--model", str(model_dir), "--data", str(data), "--preset", "r1", "-n", "16", "--k", "1,4,16",
                "--max-new-tokens", "8", "--no-chat-template", "--pattern", r"<answer>(.*?)</answer>",
                "--out", str(out), "--no-progress", "--gamma-from", cal_path, "--reach", "0.1,0.5"]
        assert main(args) == 0, capsys.readouterr().err
    finally:
        torch.set_num_threads(before)
    capsys.readouterr()
    d = json.loads((out / "report.json").read_text())
    assert d["config"]["gamma"] == pytest.approx(cal.gamma, abs=0)
    assert d["config"]["gamma_calibration"]["runs"] == 4
    assert d["verdict"]["gamma"] == pytest.approx(cal.gamma, abs=0)
    assert d["fate"]["gamma"] == pytest.approx(cal.gamma, abs=0) and d["fate"]["reach"] == [0.1, 0.5]
    md = (out / "report.md").read_text()
    assert f"γ = {cal.gamma:.3f} was fitted to 4 past RL runs" in md
    assert "## Per-problem fate after RL" in md
    assert (out / "fate.png").stat().st_size > 0
    html = (out / "whatif.html").read_text()
    assert '"mode": "run"' in html and "This run" in html
    # --gamma and --gamma-from together: one line, exit 2
    assert main(args[:-4] + ["--gamma", "0.5", "--gamma-from", cal_path]) == 2
    assert "not both" in capsys.readouterr().err


def test_cli_bad_reach_is_an_argparse_error(capsys):
    from fastpass.cli import main

    with pytest.raises(SystemExit) as e:
        main(["screen", "--reach", "0.5,0.1"])
    assert e.value.code == 2
    assert "reach must satisfy" in capsys.readouterr().err
