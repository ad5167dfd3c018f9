"""KV storage for one decode chunk: each prompt's KV once (prefix), each sample's own tokens (suffix).

The store is handed to the model as a forward keyword; the registered attention function reads
``mode`` to know whether it is prefilling packed prompts or decoding one token per sequence."""
from __future__ import annotations

import torch


class KVStore:
    """Per-layer tensors ``prefix_k/v[layer]: [P, Hkv, Lp, D]`` and ``suffix_k/v[layer]: [N, Hkv, S, D]``.

    Layer tensors are allocated lazily by the first prefill call (the attention function sees the
    real per-layer kv-head count, head size and dtype there), so any layer layout works."""

    def __init__(self, prompt_lens: list[int], seqs_per_prompt: list[int], suffix_capacity: int,
                 device: torch.device, backend: str | None = None):
        self.device = torch.device(device)
        self.backend = backend
        # prefill has no C++ tier: with backend="cpu" it runs its default CPU tier (torch's fused SDPA)
        self.prefill_backend = None if backend == "cpu" else backend
        self.num_prompts = len(prompt_lens)
        self.num_seqs = sum(seqs_per_prompt)
        self.prefix_capacity = max(prompt_lens)
        self.max_seqs_per_prompt = max(seqs_per_prompt)
        self.max_prefill_len = self.prefix_capacity
        self.suffix_capacity = max(1, suffix_capacity)
        i32 = dict(dtype=torch.int32, device=self.device)
        self.prefix_lens = torch.tensor(prompt_lens, **i32)
        self.seq_offsets = torch.tensor([0] + list(_cumsum(seqs_per_prompt)), **i32)
        self.prompt_of_seq = torch.repeat_interleave(
            torch.arange(self.num_prompts, device=self.device), torch.tensor(seqs_per_prompt, device=self.device))
        self.prefix_k: dict[int, torch.Tensor] = {}
        self.prefix_v: dict[int, torch.Tensor] = {}
        self.suffix_k: dict[int, torch.Tensor] = {}
        self.suffix_v: dict[int, torch.Tensor] = {}
        # decode state, updated in place (so a captured graph sees new values on replay)
        self.suffix_lens = torch.zeros(self.num_seqs, **i32)  # valid entries incl. the current token
        self.write_pos = torch.zeros((), dtype=torch.int64, device=self.device)
        self.suffix_rows = None  # identity: batch row i keeps its suffix at storage row i
        # prefill metadata, set by begin_prefill
        self.mode = "prefill"
        self.cu_seqlens = None
        self._tok_prompt = None
        self._tok_pos = None

    # ---- prefill --------------------------------------------------------------------------
    def begin_prefill(self, prompt_ids: list[int], lens: list[int]) -> None:
        """Next forward packs the prompts ``prompt_ids`` (lengths ``lens``) into one sequence."""
        self.mode = "prefill"
        self.max_prefill_len = max(lens)
        dev = self.device
        self.cu_seqlens = torch.tensor([0] + list(_cumsum(lens)), dtype=torch.int32, device=dev)
        self._tok_prompt = torch.repeat_interleave(torch.tensor(prompt_ids, device=dev),
                                                   torch.tensor(lens, device=dev))
        self._tok_pos = torch.cat([torch.arange(n, device=dev) for n in lens])

    def store_prefix(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """k, v: [T, Hkv, D] packed prompt keys/values (after RoPE) of the current prefill."""
        if layer not in self.prefix_k:
            T, hkv, d = k.shape
            pshape = (self.num_prompts, hkv, self.prefix_capacity, d)
            sshape = (self.num_seqs, hkv, self.suffix_capacity, d)
            self.prefix_k[layer] = torch.zeros(pshape, dtype=k.dtype, device=self.device)
            self.prefix_v[layer] = torch.zeros(pshape, dtype=v.dtype, device=self.device)
            self.suffix_k[layer] = torch.zeros(sshape, dtype=k.dtype, device=self.device)
            self.suffix_v[layer] = torch.zeros(sshape, dtype=v.dtype, device=self.device)
        self.prefix_k[layer][self._tok_prompt, :, self._tok_pos, :] = k
        self.prefix_v[layer][self._tok_prompt, :, self._tok_pos, :] = v

    # ---- decode ---------------------------------------------------------------------------
    def begin_decode(self) -> None:
        self.mode = "decode"

    def set_step(self, step: torch.Tensor) -> None:
        """Decode step ``step`` (0-d int64 device tensor) writes suffix slot ``step``; no host sync."""
        self.write_pos.copy_(step)
        self.suffix_lens.copy_((step + 1).to(torch.int32).expand(self.num_seqs))

    def store_suffix(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """k, v: [N, Hkv, D], the current token of every sequence."""
        slot = self.write_pos.view(1)  # every row writes the same slot: one strided copy, graph-safe
        self.suffix_k[layer].index_copy_(2, slot, k.unsqueeze(2))
        self.suffix_v[layer].index_copy_(2, slot, v.unsqueeze(2))

    def keep_rows(self, keep: torch.Tensor) -> None:
        """Compaction: keep only sequences ``keep`` (sorted int64 indices; prompt grouping stays)."""
        for layer in list(self.suffix_k):
            self.suffix_k[layer] = self.suffix_k[layer].index_select(0, keep)
            self.suffix_v[layer] = self.suffix_v[layer].index_select(0, keep)
        self.prompt_of_seq = self.prompt_of_seq.index_select(0, keep)
        counts = torch.bincount(self.prompt_of_seq, minlength=self.num_prompts)
        self.seq_offsets = torch.cat([counts.new_zeros(1), counts.cumsum(0)]).to(torch.int32)
        self.num_seqs = int(keep.numel())
        self.suffix_lens = self.suffix_lens.index_select(0, keep)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for d in (self.prefix_k, self.prefix_v, self.suffix_k,
                                                           self.suffix_v) for t in d.values())


class SlotKVStore(KVStore):
    """KV storage for continuous batching: ``num_slots`` resident prompts (prefix slots, refilled
    as prompts finish) and ``num_rows`` suffix rows (one per decode row, refilled as samples finish).

    The batch order changes at every refill, the storage never moves: the scheduler sets
    ``suffix_rows`` (batch row -> storage row), ``suffix_lens`` and ``write_slots`` (per batch row)
    and ``seq_offsets`` (batch rows grouped by slot) in place before each step."""

    def __init__(self, num_slots: int, prefix_capacity: int, num_rows: int, suffix_capacity: int,
                 device: torch.device, backend: str | None = None):
        super().__init__([prefix_capacity] * num_slots, [1] * num_slots, suffix_capacity, device, backend)
        self.num_seqs = num_rows  # storage rows: sizes the suffix tensors
        self.prefix_lens.zero_()  # a slot's length is set when a prompt is prefilled into it
        self.prompt_of_seq = None
        # per batch row, set before each step by the scheduler
        self.suffix_lens = self.suffix_rows = self.write_slots = None

    def store_suffix(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """k, v: [B, Hkv, D], the current token of every batch row, written at its own slot."""
        rows, slots = self.suffix_rows, self.write_slots
        self.suffix_k[layer][rows, :, slots] = k
        self.suffix_v[layer][rows, :, slots] = v


def _cumsum(xs):
    total = 0
    for x in xs:
        total += x
        yield total
