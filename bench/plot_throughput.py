"""Figure: generated tokens/s against K (samples per prompt) and against prompt length, for
fastpass (``fp.Sampler``: prompt prefilled once, KV shared by its K samples) and HF
``generate(num_return_sequences=K)`` (prompt copied K times), same model, dtype and device.

    python -m bench.plot_throughput --device cuda                       # Qwen2.5-1.5B shape, bf16
    python -m bench.plot_throughput --model tiny --ks 2,4 --prompt-lens 8,16 --new-tokens 4   # CPU smoke
    python -m bench.plot_throughput --replot bench/figures/throughput.json   # redraw, no measuring

Random-init weights with EOS disabled, so both engines generate exactly ``new_tokens`` per
sample; tokens/s = prompts x K x new_tokens / wall time of the whole call (prefill included).
Writes ``bench/figures/throughput.png`` and the measured points as ``throughput.json`` beside it."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

FIGURES = Path(__file__).with_name("figures")
DEFAULT_KS = (16, 32, 64, 128, 256)
DEFAULT_PROMPT_LENS = (128, 256, 512, 1024, 2048, 4096)


def model_config(name: str):
    from transformers import LlamaConfig, Qwen2Config

    if name == "qwen2.5-1.5b":
        return Qwen2Config(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                           num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=32768,
                           rope_theta=1000000.0, tie_word_embeddings=True, rms_norm_eps=1e-6)
    if name == "smollm2-135m":
        return LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                           num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                           rope_theta=100000.0, tie_word_embeddings=True, rms_norm_eps=1e-5)
    if name == "tiny":
        return LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8192)
    raise ValueError(f"unknown model shape {name!r}: use qwen2.5-1.5b, smollm2-135m or tiny")


def build_model(name: str, device: str, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(model_config(name), dtype=dtype, attn_implementation="sdpa")
    model.eval()
    model.generation_config.eos_token_id = None  # random weights: every sample runs to new_tokens
    model.generation_config.pad_token_id = 0
    return model


def _wall(fn, device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def _oom_as_none(fn):
    try:
        return fn()
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        return None


def measure(model, k: int, prompt_len: int, new_tokens: int, num_prompts: int = 1, device: str = "cpu",
            hf: bool = True, backend: str | None = None, reps: int = 1) -> dict:
    """One point: tokens/s of fastpass and (optionally) HF on ``num_prompts`` random prompts x k."""
    import fastpass as fp

    g = torch.Generator().manual_seed(prompt_len)
    ids = torch.randint(1, model.config.vocab_size, (num_prompts, prompt_len), generator=g)
    tokens = num_prompts * k * new_tokens
    sampler = fp.Sampler(model, backend=backend)

    def run_fastpass():
        batch = sampler.sample(ids.tolist(), n=k, max_new_tokens=new_tokens, temperature=1.0, seed=0)
        if batch.num_tokens != tokens:
            raise RuntimeError(f"fastpass generated {batch.num_tokens} tokens, expected {tokens}")

    t_fp = _oom_as_none(lambda: min(_wall(run_fastpass, device) for _ in range(reps)))
    point = {"k": k, "prompt_len": prompt_len, "new_tokens": new_tokens, "num_prompts": num_prompts,
             "fastpass_tok_s": None if t_fp is None else tokens / t_fp, "hf_tok_s": None}
    if hf:
        dev_ids = ids.to(device)

        def run_hf():
            out = model.generate(dev_ids, attention_mask=torch.ones_like(dev_ids), do_sample=True, top_k=0,
                                 temperature=1.0, num_return_sequences=k, max_new_tokens=new_tokens,
                                 min_new_tokens=new_tokens)
            if out.shape != (num_prompts * k, prompt_len + new_tokens):
                raise RuntimeError(f"HF generate returned shape {tuple(out.shape)}")

        t_hf = _oom_as_none(lambda: min(_wall(run_hf, device) for _ in range(reps)))
        point["hf_tok_s"] = None if t_hf is None else tokens / t_hf
    return point


def sweep(model, ks, prompt_lens, fixed_k: int, fixed_prompt: int, new_tokens: int, num_prompts: int = 1,
          device: str = "cpu", hf: bool = True, backend: str | None = None, reps: int = 1,
          progress=print) -> dict:
    """Both sweeps: over K at ``fixed_prompt`` and over prompt length at ``fixed_k``."""
    measure(model, min(ks), min(prompt_lens), min(new_tokens, 4), 1, device, hf, backend)  # warm-up / compile
    out = {"vs_k": [], "vs_prompt": []}
    for key, grid in (("vs_k", [(k, fixed_prompt) for k in ks]), ("vs_prompt", [(fixed_k, p) for p in prompt_lens])):
        for k, p in grid:
            pt = measure(model, k, p, new_tokens, num_prompts, device, hf, backend, reps)
            out[key].append(pt)
            progress(f"{key}: K={k} prompt={p}: fastpass {_fmt(pt['fastpass_tok_s'])} tok/s, "
                     f"HF {_fmt(pt['hf_tok_s'])} tok/s")
    return out


def _fmt(v) -> str:
    return "OOM" if v is None else f"{v:.4g}"


def plot(result: dict, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, x, label in ((axes[0], "vs_k", "k", "K (samples per prompt)"),
                              (axes[1], "vs_prompt", "prompt_len", "prompt length (tokens)")):
        pts = result[key]
        xs = [p[x] for p in pts]
        for name, field, style in (("fastpass", "fastpass_tok_s", "o-"), ("HF generate", "hf_tok_s", "s--")):
            ys = [p[field] if p[field] is not None else float("nan") for p in pts]
            if any(y == y for y in ys):
                ax.plot(xs, ys, style, label=name)
        for p in pts:
            if p["fastpass_tok_s"] and p["hf_tok_s"]:
                ax.annotate(f"{p['fastpass_tok_s'] / p['hf_tok_s']:.1f}x", (p[x], p["fastpass_tok_s"]),
                            textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
        fixed = (f"prompt {pts[0]['prompt_len']}" if key == "vs_k" else f"K={pts[0]['k']}") if pts else ""
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(v) for v in xs])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_yscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("generated tokens/s")
        ax.set_title(f"{fixed}, {pts[0]['new_tokens'] if pts else '?'} new tokens")
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _ints(text: str) -> list[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give positive integers, e.g. 16,32,64")
    return vals


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--model", default=None, help="qwen2.5-1.5b (cuda default), smollm2-135m (cpu default), tiny")
    ap.add_argument("--dtype", default=None, choices=["bfloat16", "float16", "float32"],
                    help="default bfloat16 on cuda, float32 on cpu")
    ap.add_argument("--ks", type=_ints, default=list(DEFAULT_KS))
    ap.add_argument("--prompt-lens", type=_ints, default=list(DEFAULT_PROMPT_LENS))
    ap.add_argument("--fixed-k", type=int, default=None, help="K of the prompt-length sweep (default: middle of --ks)")
    ap.add_argument("--fixed-prompt", type=int, default=None,
                    help="prompt length of the K sweep (default: middle of --prompt-lens)")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--num-prompts", type=int, default=1)
    ap.add_argument("--reps", type=int, default=None,
                    help="best of N timings per point (default 2 on cuda: the first call captures graphs, 1 on cpu)")
    ap.add_argument("--no-hf", action="store_true", help="fastpass only")
    ap.add_argument("--backend", default=None, help="force a fastpass tier (reference, triton, ...)")
    ap.add_argument("--out", type=Path, default=FIGURES / "throughput.png")
    ap.add_argument("--replot", type=Path, metavar="JSON", help="redraw a figure from a saved throughput.json")
    args = ap.parse_args(argv)
    if args.replot:
        result = json.loads(args.replot.read_text())
        env = result.get("env", {})
        title = (f"{result.get('model', '?')} (random init, {result.get('dtype', '?')}) on {env.get('device', '?')}, "
                 f"commit {env.get('commit', '?')}")
        print(f"wrote {plot(result, args.out, title)}")
        return
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("plot_throughput: --device cuda needs a visible CUDA GPU: use --device cpu")
    name = args.model or ("qwen2.5-1.5b" if args.device == "cuda" else "smollm2-135m")
    dtype = getattr(torch, args.dtype or ("bfloat16" if args.device == "cuda" else "float32"))
    model = build_model(name, args.device, dtype)
    fixed_k = args.fixed_k or args.ks[len(args.ks) // 2]
    fixed_prompt = args.fixed_prompt or args.prompt_lens[len(args.prompt_lens) // 2]
    result = sweep(model, args.ks, args.prompt_lens, fixed_k, fixed_prompt, args.new_tokens, args.num_prompts,
                   args.device, not args.no_hf, args.backend, args.reps or (2 if args.device == "cuda" else 1))
    from bench._common import env_info

    env = env_info(args.device)
    result.update({"model": name, "dtype": str(dtype).replace("torch.", ""), "env": env})
    title = f"{name} (random init, {result['dtype']}) on {env['device']}, commit {env['commit']}"
    png = plot(result, args.out, title)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    print(f"wrote {png} and {args.out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
