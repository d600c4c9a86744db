"""A KV cache whose buffers are allocated once for the whole generation (no per-step reallocation).

HF's `DynamicCache` grows each layer's keys and values by `torch.cat` at every decoding step: a new
[N, H, T, D] tensor per layer per step, so copying is quadratic in the response length and, on CPU,
every step pays for fresh page-faulted allocations. `reserve(cache, repeats, extra)` turns a
prefilled `DynamicCache` (the prompts, computed once) into one whose layers hold zeroed buffers with
room for `extra` more positions, each prompt's rows repeated `repeats` times: decoding steps write in
place, as with HF's `StaticCache`. Attention reads the whole (contiguous) buffer and the causal mask
hides the slots not written yet: on CPU, SDPA over a strided view of the filled prefix measured twice
as slow as over the contiguous buffer. Finished rows are dropped with `cache.batch_select_indices`.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import DynamicLayer


class ReservedLayer(DynamicLayer):
    """A DynamicLayer backed by zeroed buffers [N, H, capacity, D] written in place; `length` positions
    are filled. Like StaticLayer, masks span the capacity (the causal mask hides unwritten slots)."""

    is_compileable = True  # as StaticLayer: HF then never drops the causal mask for one-token queries

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, capacity: int, repeats: int = 1) -> None:
        super().__init__()
        self._kbuf, self._vbuf = _repeated(keys, capacity, repeats), _repeated(values, capacity, repeats)
        self.length = keys.shape[2]
        self.device = keys.device
        self.is_initialized = True
        self._views()

    def _views(self) -> None:
        self.keys, self.values = self._kbuf, self._vbuf

    def get_seq_length(self) -> int:
        """Positions filled so far (the next query's position)."""
        return self.length

    def get_max_length(self) -> int:
        """The capacity."""
        return int(self._kbuf.shape[2])

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        """Masks span the whole buffer, as for StaticLayer."""
        return max(self.get_max_length(), self.length + query_length), 0

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the new positions in place (growing the buffers only past their capacity)."""
        end = self.length + key_states.shape[-2]
        if end > self._kbuf.shape[2]:  # past the reservation: grow (the next mask must span the new size)
            grow = end - self._kbuf.shape[2]
            self._kbuf = torch.nn.functional.pad(self._kbuf, (0, 0, 0, grow))
            self._vbuf = torch.nn.functional.pad(self._vbuf, (0, 0, 0, grow))
        self._kbuf[:, :, self.length : end].copy_(key_states)
        self._vbuf[:, :, self.length : end].copy_(value_states)
        self.length = end
        self._views()
        assert self.keys is not None and self.values is not None
        return self.keys, self.values

    def crop(self, tokens_to_remove: int) -> None:
        """Forget the last -tokens_to_remove positions (HF's convention: a negative count)."""
        if tokens_to_remove < 0:
            self.length = max(0, self.length + tokens_to_remove)
            self._views()
        else:
            super().crop(tokens_to_remove)

    def batch_repeat_interleave(self, repeats: int) -> None:
        """Repeat every row `repeats` times."""
        self._kbuf = self._kbuf.repeat_interleave(repeats, dim=0)
        self._vbuf = self._vbuf.repeat_interleave(repeats, dim=0)
        self._views()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep only the rows `indices` (e.g. the unfinished ones)."""
        self._kbuf = self._kbuf.index_select(0, indices)
        self._vbuf = self._vbuf.index_select(0, indices)
        self._views()

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Reorder rows (beam search)."""
        self.batch_select_indices(beam_idx)


def _repeated(x: torch.Tensor, capacity: int, repeats: int) -> torch.Tensor:
    """[P, H, T, D] -> a buffer [P * repeats, H, capacity, D]: each row repeated, zeros after T."""
    P, H, T, D = x.shape
    buf = x.new_empty((P, repeats, H, capacity, D))
    buf[:, :, :, :T].copy_(x.unsqueeze(1))
    buf[:, :, :, T:].zero_()  # finite, so masked slots weigh exactly 0
    return buf.view(P * repeats, H, capacity, D)


def reserve(cache: Any, repeats: int, extra: int) -> bool:
    """Replace a prefilled cache's plain DynamicLayers by ReservedLayers with room for `extra` more
    positions, each row repeated `repeats` times. Returns False (cache untouched) when the cache is not
    made only of plain DynamicLayers (sliding windows, quantised or non-HF caches): the caller then
    repeats it the usual way."""
    layers = getattr(cache, "layers", None)
    if not layers or any(type(layer) is not DynamicLayer or not layer.is_initialized for layer in layers):
        return False
    for i, layer in enumerate(layers):
        layers[i] = ReservedLayer(layer.keys, layer.values, layer.keys.shape[2] + extra, repeats)
    return True
