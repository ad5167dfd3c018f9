"""Token id -> UTF-8 bytes table, so token ids decode to bytes on the device.

Byte-level BPE vocabularies (GPT-2, Llama 3, Qwen, SmolLM2) spell bytes with printable stand-in
characters; SentencePiece vocabularies use "▁" for spaces and ``<0xNN>`` pieces for raw bytes.
Added tokens (special or not) are their content as written."""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np
import torch


@functools.lru_cache(maxsize=1)
def _byte_decoder() -> dict:
    # GPT-2's bytes_to_unicode, inverted: printable bytes map to themselves, the rest to 256+.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


_SP_BYTE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


@dataclass
class TokenBytes:
    """Flattened table: bytes of token t are ``data[offsets[t]:offsets[t+1]]``."""
    data: torch.Tensor      # uint8[total]
    offsets: torch.Tensor   # int64[V + 1]

    @property
    def vocab_size(self) -> int:
        return self.offsets.numel() - 1

    @property
    def device(self) -> torch.device:
        return self.data.device

    def to(self, device) -> "TokenBytes":
        return TokenBytes(self.data.to(device), self.offsets.to(device))

    def token_bytes(self, token_id: int) -> bytes:
        offs = self.offsets
        a, b = int(offs[token_id]), int(offs[token_id + 1])
        return bytes(self.data[a:b].cpu().numpy())

    def decode_bytes(self, ids) -> bytes:
        """Concatenated bytes of ``ids`` (negative or out-of-vocabulary ids carry none)."""
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        data, offs = self._host()
        v = self.vocab_size
        return b"".join(data[offs[i]:offs[i + 1]] for i in ids if 0 <= i < v)

    def decode(self, ids) -> str:
        """The text the regex engine sees for ``ids``: bytes decoded with errors="replace"."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def _host(self):
        cached = getattr(self, "_host_cache", None)
        if cached is None:
            cached = (bytes(self.data.cpu().numpy()), self.offsets.cpu().tolist())
            object.__setattr__(self, "_host_cache", cached)
        return cached


def from_bytes(pieces: list[bytes]) -> TokenBytes:
    lengths = np.fromiter((len(p) for p in pieces), dtype=np.int64, count=len(pieces))
    offsets = np.zeros(len(pieces) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    data = np.frombuffer(b"".join(pieces), dtype=np.uint8).copy()
    return TokenBytes(torch.from_numpy(data), torch.from_numpy(offsets))


def _is_byte_level(tokenizer) -> bool:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    decoder = getattr(backend, "decoder", None)
    if decoder is not None and "ByteLevel" in repr(decoder):
        return True
    vocab = tokenizer.get_vocab()
    return "Ġ" in "".join(list(vocab)[:5000]) and "▁" not in "".join(list(vocab)[:5000])


def token_byte_table(tokenizer) -> TokenBytes:
    """Token id -> UTF-8 bytes for a Hugging Face tokenizer (byte-level BPE or SentencePiece)."""
    if not hasattr(tokenizer, "convert_ids_to_tokens"):
        raise TypeError("token_byte_table needs a Hugging Face tokenizer (with convert_ids_to_tokens)")
    size = len(tokenizer)
    tokens = tokenizer.convert_ids_to_tokens(list(range(size)))
    added = {i: t.content for i, t in getattr(tokenizer, "added_tokens_decoder", {}).items()}
    byte_level = _is_byte_level(tokenizer)
    table = _byte_decoder()
    pieces = []
    for i, tok in enumerate(tokens):
        if i in added:
            pieces.append(added[i].encode("utf-8"))
        elif tok is None:
            pieces.append(b"")
        elif byte_level and all(ch in table for ch in tok):
            pieces.append(bytes(table[ch] for ch in tok))
        elif not byte_level and _SP_BYTE.fullmatch(tok):
            pieces.append(bytes([int(tok[3:5], 16)]))
        elif not byte_level:
            pieces.append(tok.replace("▁", " ").encode("utf-8"))
        else:
            pieces.append(tokenizer.decode([i]).encode("utf-8"))
    return from_bytes(pieces)
