"""Batch search over text or token-id items: tiers ``cuda`` (csrc/cuda/regex.cu), ``cpu``
(csrc/cpu/regex.cpp, threads) and ``reference`` (the Python Pike VM in _pikevm.py).

All tiers return code point offsets (as ``re``) and byte offsets into each item's UTF-8 bytes;
the kernels can also grade the extracted group against gold keys on the device."""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from fastpass import _backend
from fastpass.regex._pikevm import compile_reference, search_codepoints
from fastpass.regex.normalize import NORMALIZE_CODES, compare_key
from fastpass.regex.tokens import TokenBytes

MAX_NATIVE_SLOTS = 64  # run_item keeps the best match in a fixed local array


@dataclass
class Items:
    """Normalised batch input: a list of str, or token ids [B, L] + lengths + a byte table."""
    texts: list | None = None
    ids: torch.Tensor | None = None
    lengths: torch.Tensor | None = None
    token_bytes: TokenBytes | None = None
    text_device: torch.device | None = None  # where text items are searched (default CPU)

    @property
    def batch(self) -> int:
        return len(self.texts) if self.texts is not None else self.ids.shape[0]

    @property
    def device(self) -> torch.device:
        if self.texts is not None:
            return self.text_device or torch.device("cpu")
        return self.ids.device

    def text(self, i: int) -> str:
        if self.texts is not None:
            return self.texts[i]
        n = int(self.lengths[i])
        return self.token_bytes.decode(self.ids[i, :n].cpu())

    def item_bytes(self, i: int) -> bytes:
        if self.texts is not None:
            return self.texts[i].encode("utf-8")
        n = int(self.lengths[i])
        return self.token_bytes.decode_bytes(self.ids[i, :n].cpu())


def make_items(items, token_bytes=None, lengths=None) -> Items:
    if isinstance(items, Items):
        return items
    if isinstance(items, torch.Tensor):
        if token_bytes is None:
            raise TypeError("token-id items need token_bytes=fastpass.regex.token_byte_table(tokenizer)")
        if items.dim() == 1:
            items = items[None]
        if items.dim() != 2:
            raise ValueError(f"token ids must be [B, L], got shape {tuple(items.shape)}")
        ids = items.to(torch.int64).contiguous()
        if lengths is None:
            lengths = torch.full((ids.shape[0],), ids.shape[1], dtype=torch.int64, device=ids.device)
        lengths = torch.as_tensor(lengths, dtype=torch.int64, device=ids.device).clamp(0, ids.shape[1])
        return Items(ids=ids, lengths=lengths.contiguous(), token_bytes=token_bytes)
    if isinstance(items, str):
        raise TypeError("search_batch takes a list of str (use .search for one string)")
    return Items(texts=items if type(items) is list else list(items))  # str-checked by run()


def check_texts(texts: list, what: str = "items") -> None:
    if not set(map(type, texts)) <= {str}:
        bad = next(t for t in texts if not isinstance(t, str))
        if what == "items":
            raise TypeError(f"items must be str or a token-id tensor, got {type(bad).__name__}")
        raise TypeError(f"{what} must be str, got {type(bad).__name__}")


@dataclass
class RawResult:
    found: torch.Tensor       # bool[B]
    cp_slots: torch.Tensor    # int64[B, S]
    byte_slots: torch.Tensor  # int64[B, S]
    grade: torch.Tensor | None  # int8[B] (1, 0, -1 undecided) or None


def choose_tier(items: Items, n_slots: int, backend=None) -> str:
    implemented = ("cuda", "cpu", "reference")
    tier = _backend.choose("regex.search_batch", implemented, items.device, backend)
    if tier != "reference" and n_slots > MAX_NATIVE_SLOTS:
        if backend:
            raise ValueError(f"the {tier} regex tier supports at most {MAX_NATIVE_SLOTS // 2 - 1} groups")
        tier = "reference"
    return tier


def _pack_texts(texts, device):
    encoded = [t.encode("utf-8", "surrogatepass") for t in texts]
    offs = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(e) for e in encoded], out=offs[1:])
    data = torch.frombuffer(bytearray(b"".join(encoded)) or bytearray(1), dtype=torch.uint8)
    return data.to(device), torch.from_numpy(offs).to(device)


def run(code: np.ndarray, n_slots: int, items: Items, occurrence_last=False, grade=None,
        backend=None, offsets=("cp", "byte"), text_as_bytes=False) -> RawResult:
    """grade: None or (group, normalize name, gold keys, to_str): the keys are str, or to_str
    (list -> list[str], raising a one-line error for a gold it cannot take) makes them so; the
    C++ tier reads str keys in place and calls to_str only when one is not a str. offsets:
    which offset kinds to return (grading alone needs none); text_as_bytes: give the CPU tier
    UTF-8 bytes instead of the str objects (the GPU's text path, testable on CPU)."""
    tier = choose_tier(items, n_slots, backend)
    if items.texts is not None and (tier != "cpu" or text_as_bytes):
        check_texts(items.texts)  # the C++ tier checks each str as it reads it in place
    if grade is not None and (tier != "cpu" or text_as_bytes):
        grade = _keys_as_str(grade)  # these tiers read every key in Python anyway
    if tier == "reference":
        return _run_reference(code, n_slots, items, occurrence_last, grade)
    return _run_native(tier, code, n_slots, items, occurrence_last, grade, offsets, text_as_bytes)


def _keys_as_str(grade):
    group, norm, keys, *fix = grade
    if fix and fix[0] is not None:
        keys = fix[0](keys)
    else:
        check_texts(keys, "gold keys")
    return group, norm, keys, None


def _threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def _run_native(tier, code, n_slots, items: Items, occurrence_last, grade, offsets,
                text_as_bytes=False) -> RawResult:
    C = _backend.native()
    dev = items.device if tier == "cuda" else torch.device("cpu")
    B = items.batch
    code_t = torch.from_numpy(np.ascontiguousarray(code)).to(dev)
    found = torch.zeros(B, dtype=torch.uint8, device=dev)
    # The kernels write every requested slot; unrequested offsets stay unallocated.
    cp_slots = torch.empty((B if "cp" in offsets else 0, n_slots), dtype=torch.int64, device=dev)
    byte_slots = torch.empty((B if "byte" in offsets else 0, n_slots), dtype=torch.int64, device=dev)
    keep = []  # tensors whose pointers the kernel reads
    args = dict(code=code_t.data_ptr(), batch=B, text=0, text_offs=0, ids=0, ids_stride=0,
                ids_lens=0, tok_data=0, tok_offs=0, vocab=0,
                occurrence_last=int(bool(occurrence_last)), found=found.data_ptr(),
                cp_slots=cp_slots.data_ptr() if "cp" in offsets else 0,
                byte_slots=byte_slots.data_ptr() if "byte" in offsets else 0, grade=0,
                grade_group=0, grade_norm=-1, gold=0, gold_offs=0, scratch=0, scratch_words=0)
    str_items = str_golds = None
    if items.texts is not None and tier == "cpu" and not text_as_bytes:
        str_items = items.texts  # read in place by the C++ tier
    elif items.texts is not None:
        data, offs = _pack_texts(items.texts, dev)
        keep += [data, offs]
        args.update(text=data.data_ptr(), text_offs=offs.data_ptr())
    else:
        tb = items.token_bytes
        if tb.device != dev:
            tb = tb.to(dev)
        ids, lens = items.ids.to(dev), items.lengths.to(dev)
        keep += [ids, lens, tb.data, tb.offsets]
        args.update(ids=ids.data_ptr(), ids_stride=ids.stride(0), ids_lens=lens.data_ptr(),
                    tok_data=tb.data.data_ptr(), tok_offs=tb.offsets.data_ptr(),
                    vocab=tb.vocab_size)
    grade_t = None
    if grade is not None:
        group, norm, golds, *_ = grade
        grade_t = torch.zeros(B, dtype=torch.int8, device=dev)
        args.update(grade=grade_t.data_ptr(), grade_group=group, grade_norm=NORMALIZE_CODES[norm])
        if tier == "cpu" and not text_as_bytes:
            str_golds = golds
        else:
            gold_data, gold_offs = _pack_texts(golds, dev)
            keep += [gold_data, gold_offs]
            args.update(gold=gold_data.data_ptr(), gold_offs=gold_offs.data_ptr())
    if tier == "cuda":
        words = int(C.regex_scratch_words(torch.from_numpy(code).data_ptr()))
        scratch = torch.empty(max(B, 1), words, dtype=torch.int32, device=dev)
        keep.append(scratch)
        args.update(scratch=scratch.data_ptr(), scratch_words=words)
        C.regex_batch_cuda(args, int(code.size), torch.cuda.current_stream(dev).cuda_stream)
    elif not C.regex_batch_cpu(args, str_items, str_golds, _threads()):  # a gold is not a str
        return _run_native(tier, code, n_slots, items, occurrence_last, _keys_as_str(grade),
                           offsets, text_as_bytes)
    del keep
    return RawResult(found.bool(), cp_slots, byte_slots, grade_t)


def _run_reference(code, n_slots, items: Items, occurrence_last, grade) -> RawResult:
    prog = compile_reference(code)
    B = items.batch
    found = np.zeros(B, dtype=bool)
    cp_slots = np.full((B, n_slots), -1, dtype=np.int64)
    byte_slots = np.full((B, n_slots), -1, dtype=np.int64)
    grades = np.zeros(B, dtype=np.int8)
    for i in range(B):
        text = items.text(i)
        cps = [ord(c) for c in text]
        m = search_codepoints(prog, cps)
        last = m
        while occurrence_last and m is not None:
            m = search_codepoints(prog, cps, start=m[1])
            last = m or last
        if last is None:
            continue
        found[i] = True
        cp_slots[i] = last
        byte_slots[i] = [-1 if v < 0 else len(text[:v].encode("utf-8", "surrogatepass")) for v in last]
        if grade is not None:
            group, norm, golds, _ = grade
            s, e = last[2 * group], last[2 * group + 1]
            grades[i] = 0 if s < 0 else int(compare_key(text[s:e], golds[i], norm))
    dev = items.device
    return RawResult(torch.from_numpy(found).to(dev), torch.from_numpy(cp_slots).to(dev),
                     torch.from_numpy(byte_slots).to(dev),
                     torch.from_numpy(grades).to(dev) if grade is not None else None)
