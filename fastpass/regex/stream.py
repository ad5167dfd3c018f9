"""Streaming match: one Pike VM state per sequence in a fixed device buffer, advanced by each
decode step's token. ``step`` reports rows whose leftmost-first match is final (a match is
recorded and no higher-priority thread is alive), so a sampler can stop them early.

Tiers: ``cuda`` (csrc/cuda/regex.cu, no host sync), ``cpu`` (C++) and ``reference`` (the
Python Pike VM re-run on each row's text so far; slow, for tests)."""
from __future__ import annotations

import numpy as np
import torch

from fastpass import _backend
from fastpass.regex._pikevm import compile_reference, search_codepoints, stream_final
from fastpass.regex.tokens import TokenBytes


class Streamer:
    def __init__(self, regex, batch_size: int, token_bytes: TokenBytes, device=None, backend=None):
        if not isinstance(token_bytes, TokenBytes):
            raise TypeError("token_bytes must come from fastpass.regex.token_byte_table(tokenizer)")
        if batch_size < 0:
            raise ValueError(f"batch_size must be >= 0, got {batch_size}")
        self.device = torch.device(device) if device is not None else token_bytes.device
        self.tier = _backend.choose("regex.Streamer", ("cuda", "cpu", "reference"), self.device, backend)
        code = regex.program.code
        self.regex = regex
        self.n = batch_size
        self.n_slots = int(regex.program.code[2])
        if self.tier == "reference":
            self._prog = compile_reference(code)
            self.token_bytes = token_bytes
            self._rows = [bytearray() for _ in range(batch_size)]
            self._ref_final = [False] * batch_size
            return
        self._C = _backend.native()
        self._code_host = torch.from_numpy(np.ascontiguousarray(code))
        self.code = self._code_host.to(self.device)
        self.words = int(self._C.regex_state_words(self._code_host.data_ptr()))
        self.token_bytes = token_bytes.to(self.device)
        self.state = torch.zeros(batch_size, self.words, dtype=torch.int32, device=self.device)
        self._final = torch.zeros(batch_size, dtype=torch.uint8, device=self.device)
        self.reset(torch.ones(batch_size, dtype=torch.bool, device=self.device))

    def _stream(self):
        return torch.cuda.current_stream(self.device).cuda_stream

    def reset(self, rows) -> None:
        """Restart the rows given as a bool mask [N] or an index tensor."""
        rows = torch.as_tensor(rows, device=self.device)
        if rows.dtype != torch.bool:
            mask = torch.zeros(self.n, dtype=torch.bool, device=self.device)
            mask[rows.long()] = True
            rows = mask
        if rows.shape != (self.n,):
            raise ValueError(f"reset rows must be a bool mask of shape [{self.n}] or an index tensor")
        if self.tier == "reference":
            for i in torch.nonzero(rows.cpu()).flatten().tolist():
                self._rows[i] = bytearray()
                self._ref_final[i] = False
            return
        rows8 = rows.to(torch.uint8).contiguous()
        if self.tier == "cuda":
            self._C.regex_stream_reset_cuda(self.code.data_ptr(), self.state.data_ptr(), self.words,
                                            rows8.data_ptr(), self.n, self._stream())
        else:
            self._C.regex_stream_reset_cpu(self.code.data_ptr(), self.state.data_ptr(), self.words,
                                           rows8.data_ptr(), self.n)

    def step(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Advance every row by one token (negative ids: no token); returns bool[N] final."""
        ids = torch.as_tensor(token_ids, device=self.device).to(torch.int64).reshape(-1).contiguous()
        if ids.numel() != self.n:
            raise ValueError(f"step needs one token id per row ({self.n}), got {ids.numel()}")
        tb = self.token_bytes
        if self.tier == "reference":
            return self._step_reference(ids)
        if self.tier == "cuda":
            self._C.regex_stream_step_cuda(self.code.data_ptr(), int(self.code.numel()),
                                           self.state.data_ptr(), self.words, self.n, ids.data_ptr(),
                                           tb.data.data_ptr(), tb.offsets.data_ptr(), tb.vocab_size,
                                           self._final.data_ptr(), self._stream())
        else:
            self._C.regex_stream_step_cpu(self.code.data_ptr(), self.state.data_ptr(), self.words,
                                          self.n, ids.data_ptr(), tb.data.data_ptr(),
                                          tb.offsets.data_ptr(), tb.vocab_size, self._final.data_ptr())
        return self._final.bool()

    def _codepoints(self, i):
        return [ord(ch) for ch in self._rows[i].decode("utf-8", errors="replace")]

    def _step_reference(self, ids):
        for i, t in enumerate(ids.cpu().tolist()):
            if self._ref_final[i] or not 0 <= t < self.token_bytes.vocab_size:
                continue
            self._rows[i] += self.token_bytes.token_bytes(t)
            self._ref_final[i] = stream_final(self._prog, self._codepoints(i))
        return torch.tensor(self._ref_final, dtype=torch.bool, device=self.device)

    def _finish(self):
        if self.tier == "reference":
            found = torch.zeros(self.n, dtype=torch.bool)
            slots = torch.full((self.n, self.n_slots), -1, dtype=torch.int64)
            for i in range(self.n):
                m = search_codepoints(self._prog, self._codepoints(i))
                if m is not None:
                    found[i] = True
                    slots[i] = torch.tensor(m)
            return found.to(self.device), slots.to(self.device)
        state = self.state.clone()  # end of input is applied to a copy: the rows may go on
        found = torch.zeros(self.n, dtype=torch.uint8, device=self.device)
        slots = torch.empty(self.n, self.n_slots, dtype=torch.int64, device=self.device)
        if self.tier == "cuda":
            self._C.regex_stream_finish_cuda(self.code.data_ptr(), int(self.code.numel()),
                                             state.data_ptr(), self.words, self.n, found.data_ptr(),
                                             slots.data_ptr(), self._stream())
        else:
            self._C.regex_stream_finish_cpu(self.code.data_ptr(), state.data_ptr(), self.words,
                                            self.n, found.data_ptr(), slots.data_ptr())
        return found.bool(), slots

    def matched(self) -> torch.Tensor:
        """bool[N]: whether the text so far, taken as finished, contains a match."""
        return self._finish()[0]

    def spans(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(starts, ends) int64[N, G+1] in code points for the text so far taken as finished."""
        _, slots = self._finish()
        return slots[:, 0::2], slots[:, 1::2]
