"""lm-eval adapter, offline: a tiny random Llama with a locally trained byte-level BPE tokenizer,
local task YAMLs over a local JSON file. Generation runs on fastpass's reference tier."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

lm_eval = pytest.importorskip("lm_eval")
from lm_eval.api.instance import Instance  # noqa: E402

from fastpass.integrations import lm_eval as adapter  # noqa: E402

CORPUS = ["Question: what is %d plus %d?\nAnswer: %d\n" % (a, b, a + b) for a in range(20) for b in range(20)]
GEN = {"until": ["\n"], "do_sample": True, "temperature": 1.0, "max_gen_toks": 6}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=320, special_tokens=["<|endoftext|>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                                     pad_token="<|endoftext|>")
    cfg = LlamaConfig(vocab_size=len(hf_tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      eos_token_id=hf_tok.eos_token_id, bos_token_id=hf_tok.bos_token_id,
                      pad_token_id=hf_tok.pad_token_id)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny_llama")
    LlamaForCausalLM(cfg).save_pretrained(path)
    hf_tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def lm(model_dir):
    return adapter.FastpassLM(pretrained=str(model_dir), device="cpu", backend="reference", batch_size=3)


def _gen_requests(pairs):
    """(context, gen_kwargs, repeats) -> the Instance list lm-eval hands the model (one copy per repeat)."""
    out = []
    for doc_id, (ctx, kw, repeats) in enumerate(pairs):
        inst = Instance("generate_until", {}, (ctx, kw), 0, ("t", doc_id, repeats))
        out += [inst] * repeats
    return out


def _count_prefills(monkeypatch):
    from fastpass.engine.model_adapter import ModelAdapter

    seen = []
    original = ModelAdapter._prefill_group

    def counting(self, store, prompts, ids, *rest):
        seen.extend(len(prompts[i]) for i in ids)
        return original(self, store, prompts, ids, *rest)

    monkeypatch.setattr(ModelAdapter, "_prefill_group", counting)
    return seen


def test_generate_until_prefills_each_repeated_context_once(lm, monkeypatch):
    greedy = {"until": ["\n"], "do_sample": False, "max_gen_toks": 5}
    reqs = _gen_requests([("Question: what is 1 plus 2?\nAnswer:", GEN, 4),
                          ("Question: what is 13 plus 5?\nAnswer:", GEN, 4),
                          ("Question: what is 13 plus 5?\nAnswer:", greedy, 3)])
    prefills = _count_prefills(monkeypatch)
    out = lm.generate_until(reqs)
    assert len(out) == 11 and all(isinstance(s, str) and "\n" not in s for s in out)
    # three distinct (context, kwargs) prompts: each prefilled once, not once per repeat
    unique_lens = sorted([len(lm.tok_encode(reqs[0].args[0]))] + [len(lm.tok_encode(reqs[4].args[0]))] * 2)
    assert sorted(prefills) == unique_lens
    assert len(set(out[:4])) > 1, "sampled repeats of one context should differ"
    assert len(set(out[8:])) == 1, "greedy repeats are identical"


def test_generate_until_equals_direct_sampler_and_ignores_batch_composition(lm, model_dir):
    ctx_a, ctx_b = "Question: what is 1 plus 2?\nAnswer:", "Question: what is 7 plus 9?\nAnswer:"
    both = lm.generate_until(_gen_requests([(ctx_a, GEN, 3), (ctx_b, GEN, 3)]))
    alone = lm.generate_until(_gen_requests([(ctx_b, GEN, 3)]))
    assert both[3:] == alone
    import fastpass as fp

    key = adapter._kwargs_key(GEN)
    # the task leaves top_k out: hf (and so the adapter) takes HF generate's default, 50
    batch = fp.Sampler(lm.model, lm.tokenizer, backend="reference").sample(
        [lm.tok_encode(ctx_a)], n=3, max_new_tokens=6, temperature=1.0, top_k=50, seed=lm._sampling_seed(),
        stream_ids=[adapter.stream_id(ctx_a, key)])
    direct = [lm.tokenizer.decode(t, skip_special_tokens=True).split("\n")[0] for t in batch.tokens[0]]
    assert both[:3] == direct


def test_greedy_generate_until_matches_hf_generate(lm):
    ctx = "Question: what is 4 plus 4?\nAnswer:"
    got = lm.generate_until(_gen_requests([(ctx, {"until": ["\n"], "do_sample": False, "max_gen_toks": 8}, 2)]))
    ids = torch.tensor([lm.tok_encode(ctx)])
    lm.model.generation_config.pad_token_id = lm.tokenizer.pad_token_id
    hf = lm.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=8)
    want = lm.tokenizer.decode(hf[0, ids.shape[1]:], skip_special_tokens=True).split("\n")[0]
    assert got == [want, want]


def test_stop_strings_end_samples_early_without_changing_texts(lm):
    no_stop = adapter.FastpassLM(pretrained=lm.model, tokenizer=lm.tokenizer, backend="reference", stop_regex=False)
    kw = {"until": [" "], "do_sample": True, "temperature": 1.0, "max_gen_toks": 12}
    reqs = _gen_requests([("Question: what is 1 plus 2?\nAnswer:", kw, 6)])
    batches = []
    stream = lm.sampler.stream

    def spy(*a, **k):
        for i, batch in stream(*a, **k):
            batches.append(batch)
            yield i, batch

    lm.sampler.stream = spy
    try:
        with_stop = lm.generate_until(reqs)
    finally:
        del lm.sampler.stream
    assert with_stop == no_stop.generate_until(reqs)
    assert all(" " not in t for t in with_stop)
    if lm._stop([" "]) is not None:  # the regex streamer is available in this build: it must have fired
        assert "stop" in batches[0].finish_reasons[0] and batches[0].lengths.min() < 12


def test_empty_context_is_conditioned_on_the_prefix_token(lm, monkeypatch):
    prefills = _count_prefills(monkeypatch)
    out = lm.generate_until(_gen_requests([("", {"until": ["\n"], "max_gen_toks": 3}, 2)]))
    assert len(out) == 2 and out[0] == out[1] and prefills == [1]


def _direct_loglikelihood(lm, ctx_ids, cont_ids):
    ids = torch.tensor([ctx_ids + cont_ids], device=lm.model.device)
    with torch.no_grad():
        lp = lm.model(ids).logits[0].float().log_softmax(-1).cpu()
    pos = torch.arange(len(ctx_ids) - 1, len(ctx_ids) + len(cont_ids) - 1)
    target = torch.tensor(cont_ids)
    return float(lp[pos, target].sum()), bool((lp[pos].argmax(-1) == target).all())


def test_loglikelihood_equals_direct_forward(lm):
    pairs = [("Question: what is 3 plus 4?\nAnswer:", " 7"), ("Question: what is 3 plus 4?\nAnswer:", " 12"),
             ("Question: what is 3 plus 4?\nAnswer:", " 7\nQuestion: what"), ("Answer: ", "19"),
             ("", "Question: what is"), ("Q", "uestion: 9")]
    reqs = [Instance("loglikelihood", {}, p, i) for i, p in enumerate(pairs)]
    got = lm.loglikelihood(reqs)
    for (ctx, cont), (lp, greedy) in zip(pairs, got):
        if ctx == "":
            ctx_ids, cont_ids = [lm.prefix_token_id], lm.tok_encode(cont)
        else:
            moved = len(ctx) - len(ctx.rstrip())  # trailing spaces belong to the continuation (HFLM)
            ctx, cont = ctx[:len(ctx) - moved], ctx[len(ctx) - moved:] + cont
            whole, ctx_ids = lm.tok_encode(ctx + cont), lm.tok_encode(ctx)
            cont_ids = whole[len(ctx_ids):]
        want_lp, want_greedy = _direct_loglikelihood(lm, ctx_ids, cont_ids)
        assert lp == pytest.approx(want_lp, abs=1e-4)
        assert lp < 0 and greedy == want_greedy


def test_loglikelihood_rolling_equals_direct_forward(lm, model_dir):
    text = "Question: what is 11 plus 12?\nAnswer: 23\n"
    tokens = lm.tok_encode(text, add_special_tokens=False)
    want, _ = _direct_loglikelihood(lm, [lm.prefix_token_id], tokens)
    (got,) = lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (text,), 0)])
    assert got == pytest.approx(want, abs=1e-4)
    # a short max_length splits the text into windows; each is a disjoint (context, continuation)
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

    short = adapter.FastpassLM(pretrained=lm.model, tokenizer=lm.tokenizer, max_length=5, batch_size=2)
    (got_short,) = short.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (text,), 0)])
    windows = [make_disjoint_window(w) for w in get_rolling_token_windows(tokens, lm.prefix_token_id, 5, 1)]
    assert len(windows) > 2
    assert got_short == pytest.approx(sum(_direct_loglikelihood(lm, c, t)[0] for c, t in windows), abs=1e-4)


def test_parse_gen_kwargs_follows_lm_eval_semantics():
    p = adapter.parse_gen_kwargs({"until": "\n\n", "max_new_tokens": 7}, 256)
    assert p["until"] == ["\n\n"] and p["max_new_tokens"] == 7 and p["temperature"] == 0.0
    assert adapter.parse_gen_kwargs({"do_sample": False, "temperature": 0.8}, 9)["temperature"] == 0.0
    # settings the task leaves out are HF generate's defaults (top_k 50), as lm-eval's hf model samples
    assert adapter.parse_gen_kwargs({"do_sample": True}, 9) == {"until": [], "max_new_tokens": 9,
                                                                "temperature": 1.0, "top_k": 50, "top_p": 1.0,
                                                                "min_p": 0.0, "repetition_penalty": 1.0}
    p = adapter.parse_gen_kwargs({"temperature": 0.6, "top_p": 0.95, "num_beams": 1}, 9)
    assert p["top_p"] == 0.95 and p["temperature"] == 0.6  # a positive temperature samples (lm-eval's rule)
    # the model's generation config comes before HF's defaults; the task before both
    model_cfg = {"top_k": 20, "top_p": 0.9, "temperature": 0.7, "repetition_penalty": 1.1}
    p = adapter.parse_gen_kwargs({"do_sample": True, "top_k": 5}, 9, model_cfg)
    assert (p["top_k"], p["top_p"], p["temperature"], p["repetition_penalty"]) == (5, 0.9, 0.7, 1.1)
    greedy = adapter.parse_gen_kwargs({"repetition_penalty": 1.3}, 9, model_cfg)
    assert greedy["temperature"] == 0.0 and greedy["top_k"] == 0 and greedy["repetition_penalty"] == 1.3
    with pytest.raises(ValueError, match="num_beams=4 is not supported"):
        adapter.parse_gen_kwargs({"num_beams": 4}, 9)
    with pytest.raises(ValueError, match="needs temperature > 0"):
        adapter.parse_gen_kwargs({"do_sample": True, "temperature": 0.0}, 9)
    with pytest.raises(ValueError, match="'best_of'"):
        adapter.parse_gen_kwargs({"best_of": 3}, 9)


def test_bad_model_args_give_one_line_errors(lm):
    with pytest.raises(ValueError, match="pretrained="):
        adapter.FastpassLM()
    with pytest.raises(ValueError, match="batch_size"):
        adapter.FastpassLM(pretrained=lm.model, tokenizer=lm.tokenizer, batch_size="many")


def _write_tasks(root: Path) -> Path:
    data = root / "data.json"
    with data.open("w") as fh:
        for a, b in [(1, 2), (3, 4), (5, 6)]:
            fh.write(json.dumps({"question": f"what is {a} plus {b}?", "answer": str(a + b),
                                 "choices": [str(a + b), str(a + b + 1), str(a * b)], "label": 0}) + "\n")
    head = (f"dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\n  cache_dir: {root / 'cache'}\n"
            "test_split: test\n")
    (root / "fp_gen.yaml").write_text(
        "task: fp_gen\n" + head + "output_type: generate_until\n"
        'doc_to_text: "Question: {{question}}\\nAnswer:"\ndoc_to_target: " {{answer}}"\nrepeats: 4\n'
        'generation_kwargs:\n  until: ["\\n"]\n  do_sample: true\n  temperature: 1.0\n  max_gen_toks: 6\n'
        "metric_list:\n  - metric: exact_match\n"
        "filter_list:\n  - name: take_first\n    filter:\n      - function: take_first\n")
    (root / "fp_mc.yaml").write_text(
        "task: fp_mc\n" + head + "output_type: multiple_choice\n"
        'doc_to_text: "Question: {{question}}\\nAnswer:"\ndoc_to_choice: "{{choices}}"\ndoc_to_target: label\n'
        "metric_list:\n  - metric: acc\n")
    (root / "fp_ppl.yaml").write_text(
        "task: fp_ppl\n" + head + "output_type: loglikelihood_rolling\n"
        'doc_to_text: ""\ndoc_to_target: "Question: {{question}} Answer: {{answer}}"\n'
        "metric_list:\n  - metric: word_perplexity\n  - metric: bits_per_byte\n")
    return root


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_simple_evaluate_by_registered_name(model_dir, tmp_path, offline):
    from lm_eval.tasks import TaskManager

    tasks = _write_tasks(tmp_path)
    res = lm_eval.simple_evaluate(model="fastpass", model_args=f"pretrained={model_dir},device=cpu,backend=reference",
                                  tasks=["fp_gen", "fp_mc", "fp_ppl"], log_samples=True,
                                  task_manager=TaskManager(include_path=str(tasks)))
    r = res["results"]
    assert 0.0 <= r["fp_mc"]["acc,none"] <= 1.0 and 0.0 <= r["fp_gen"]["exact_match,take_first"] <= 1.0
    assert 1.0 < r["fp_ppl"]["word_perplexity,none"] < float("inf")
    gen = res["samples"]["fp_gen"]
    assert len(gen) == 3 and all(len(s["resps"][0]) == 4 for s in gen)


@pytest.mark.slow
def test_module_entry_point_runs_lm_eval_cli(model_dir, tmp_path):
    tasks = _write_tasks(tmp_path)
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "fastpass.integrations.lm_eval", "--model", "fastpass",
                           "--model_args", f"pretrained={model_dir},backend=reference", "--device", "cpu",
                           "--tasks", "fp_mc", "--include_path", str(tasks), "--output_path", str(out)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = list(out.rglob("results*.json"))
    assert results, proc.stdout[-2000:]
    assert "acc,none" in json.loads(results[0].read_text())["results"]["fp_mc"]


@pytest.mark.gpu
def test_gpu_adapter_matches_direct_forward_and_hf_greedy(model_dir, monkeypatch):
    gpu = adapter.FastpassLM(pretrained=str(model_dir), device="cuda", dtype="float32", batch_size=4)
    assert gpu.model.device.type == "cuda"
    pairs = [("Question: what is 3 plus 4?\nAnswer:", " 7"), ("Answer:", " 19\nQuestion: what")]
    got = gpu.loglikelihood([Instance("loglikelihood", {}, p, i) for i, p in enumerate(pairs)])
    for (ctx, cont), (lp, _) in zip(pairs, got):
        whole, ctx_ids = gpu.tok_encode(ctx + cont), gpu.tok_encode(ctx)
        assert lp == pytest.approx(_direct_loglikelihood(gpu, ctx_ids, whole[len(ctx_ids):])[0], abs=1e-3)
    prefills = _count_prefills(monkeypatch)
    ctx = "Question: what is 4 plus 4?\nAnswer:"
    out = gpu.generate_until(_gen_requests([(ctx, {"until": ["\n"], "do_sample": False, "max_gen_toks": 8}, 3),
                                            (ctx, GEN, 5)]))
    assert len(prefills) == 2 and len(out) == 8
    ids = torch.tensor([gpu.tok_encode(ctx)], device="cuda")
    gpu.model.generation_config.pad_token_id = gpu.tokenizer.pad_token_id
    hf = gpu.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=8)
    assert out[:3] == [gpu.tokenizer.decode(hf[0, ids.shape[1]:], skip_special_tokens=True).split("\n")[0]] * 3


# ---- the adapter against lm-eval's own hf model (issue 12 items 21-24) ----------------------------
def _bos_adding_dir(root: Path) -> Path:
    """A Llama-2-like tokenizer: a distinct <s> that encode() prepends by default."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=320, special_tokens=["<|endoftext|>", "<s>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<s>",
                                     pad_token="<|endoftext|>")
    assert hf_tok.encode("Answer: 3")[0] == 1
    cfg = LlamaConfig(vocab_size=len(hf_tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      eos_token_id=0, bos_token_id=1, pad_token_id=0)
    torch.manual_seed(1)
    LlamaForCausalLM(cfg).save_pretrained(root)
    hf_tok.save_pretrained(root)
    return root


def _write_greedy_task(root: Path) -> None:
    text = (root / "fp_gen.yaml").read_text().replace("task: fp_gen", "task: fp_greedy")
    text = text.replace("repeats: 4\n", "").replace("do_sample: true", "do_sample: false")
    (root / "fp_greedy.yaml").write_text(text.replace("temperature: 1.0", "repetition_penalty: 1.3"))


def _evaluate(name, folder, tasks, extra="", **kw):
    from lm_eval.tasks import TaskManager

    args = f"pretrained={folder},dtype=float32{extra}" + (",backend=reference" if name == "fastpass" else "")
    return lm_eval.simple_evaluate(model=name, model_args=args, tasks=["fp_greedy", "fp_mc", "fp_ppl"], device="cpu",
                                   batch_size=1, log_samples=True, task_manager=TaskManager(include_path=str(tasks)),
                                   **kw)["samples"]


@pytest.mark.slow
@pytest.mark.parametrize("tokenizer, add_bos", [("plain", ""), ("plain", ",add_bos_token=True"),
                                                ("bos-adding", ""), ("bos-adding", ",add_bos_token=False")])
def test_same_results_as_lm_evals_hf_model(model_dir, tmp_path, offline, tokenizer, add_bos):
    """Greedy outputs identical (with a repetition penalty), loglikelihoods and rolling
    loglikelihoods within 1e-4 of lm-eval's hf model, with and without add_bos_token."""
    folder = model_dir if tokenizer == "plain" else _bos_adding_dir(tmp_path / "bos-model")
    tasks = _write_tasks(tmp_path)
    _write_greedy_task(tasks)
    hf = _evaluate("hf", folder, tasks, add_bos)
    ours = _evaluate("fastpass", folder, tasks, add_bos)
    for task in ("fp_greedy", "fp_mc", "fp_ppl"):
        assert len(hf[task]) == len(ours[task]) == 3
        for h, o in zip(hf[task], ours[task]):
            assert h["arguments"] == o["arguments"]
            if task == "fp_greedy":
                assert o["resps"] == h["resps"]
            else:
                got = [float(r[0][0] if isinstance(r[0], (list, tuple)) else r[0]) for r in o["resps"]]
                want = [float(r[0][0] if isinstance(r[0], (list, tuple)) else r[0]) for r in h["resps"]]
                np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    if add_bos == ",add_bos_token=True":  # it reached the tokenizer: every encoding starts with BOS
        lm = adapter.FastpassLM(pretrained=str(folder), device="cpu", add_bos_token=True)
        assert lm.tok_encode("Answer: 3")[0] == lm.tokenizer.bos_token_id


@pytest.mark.slow
def test_lm_eval_seed_reaches_the_samples(model_dir, tmp_path, offline):
    """lm_eval --seed (its torch part) changes the samples as it does for hf; the same seed repeats them."""
    from lm_eval.tasks import TaskManager

    tasks = _write_tasks(tmp_path)

    def run(seed):
        res = lm_eval.simple_evaluate(model="fastpass", model_args=f"pretrained={model_dir},device=cpu,backend=reference",
                                      tasks=["fp_gen"], log_samples=True, torch_random_seed=seed,
                                      task_manager=TaskManager(include_path=str(tasks)))
        return [s["resps"] for s in res["samples"]["fp_gen"]]

    first, again, other = run(11), run(11), run(12)
    assert first == again and first != other


def test_generation_config_defaults_apply_like_hf(lm, monkeypatch):
    """hf samples with the model's generation config (top_k = 50 here: HF's default): every
    sampled token lies in the top 50 of the model's distribution at its step. Plain softmax over
    this 320-token vocabulary would leave the top 50 most of the time."""
    seen = []
    stream = lm.sampler.stream

    def spy(*a, **k):
        seen.append(k)
        for i, batch in stream(*a, **k):
            tokens.extend(batch.tokens[0])
            yield i, batch

    tokens: list = []
    monkeypatch.setattr(lm.sampler, "stream", spy)
    ctx = "Question: what is 2 plus 9?\nAnswer:"
    lm.generate_until(_gen_requests([(ctx, {"until": [], "do_sample": True, "temperature": 1.0, "max_gen_toks": 8},
                                      40)]))
    assert seen[0]["top_k"] == 50 and seen[0]["top_p"] == 1.0
    prompt = lm.tok_encode(ctx)
    outside = total = 0
    with torch.no_grad():
        for toks in tokens:
            toks = [int(t) for t in toks]
            logits = lm.model(torch.tensor([prompt + toks])).logits[0, len(prompt) - 1:-1]
            ranks = (logits > logits.gather(1, torch.tensor(toks)[:, None])).sum(1)
            outside += int((ranks >= 50).sum())
            total += len(toks)
    assert total > 200 and outside == 0, (outside, total)


def test_repetition_penalty_greedy_equals_hf_generate(lm):
    ctx = "Question: what is 3 plus 3?\nAnswer:"
    kw = {"until": [], "do_sample": False, "repetition_penalty": 1.3, "max_gen_toks": 40}
    got = lm.generate_until(_gen_requests([(ctx, kw, 1)]))
    ids = torch.tensor([lm.tok_encode(ctx)])
    lm.model.generation_config.pad_token_id = lm.tokenizer.pad_token_id
    hf = lm.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, repetition_penalty=1.3,
                           max_new_tokens=40)
    assert got == [lm.tokenizer.decode(hf[0, ids.shape[1]:], skip_special_tokens=True)]
    plain = lm.generate_until(_gen_requests([(ctx, dict(kw, repetition_penalty=1.0), 1)]))
    assert plain != got  # the penalty changed the greedy path here, so the comparison above tests it


def test_unsupported_settings_refused_before_any_sampling_or_named_at_start(lm, monkeypatch, caplog):
    calls = []
    monkeypatch.setattr(lm.sampler, "stream", lambda *a, **k: calls.append(k) or iter(()))
    reqs = _gen_requests([("Question: 1?", GEN, 2), ("Question: 2?", dict(GEN, num_beams=4), 2)])
    with pytest.raises(ValueError, match="num_beams=4 is not supported"):
        lm.generate_until(reqs)
    assert calls == []  # the first group was not sampled either
    cfg = lm.model.generation_config
    cfg.typical_p = 0.9
    try:
        with caplog.at_level("WARNING", logger=adapter.__name__):
            adapter.FastpassLM(pretrained=lm.model, tokenizer=lm.tokenizer, backend="reference")
    finally:
        cfg.typical_p = None
    lines = [r.getMessage() for r in caplog.records if "differs from lm-eval's hf model" in r.getMessage()]
    assert len(lines) == 1 and "typical_p=0.9" in lines[0]


def test_registering_fastpass_keeps_lm_evals_own_models():
    """lm-eval loads its models only while its registry is empty; registering fastpass first must
    not hide hf (fastpass-lm-eval --model hf, and the comparisons above, need it)."""
    code = ("import fastpass.integrations.lm_eval\nfrom lm_eval.api.registry import get_model\n"
            "print(get_model('hf').__name__, get_model('fastpass').__name__)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.split() == ["HFLM", "FastpassLM"], proc.stderr[-2000:]
