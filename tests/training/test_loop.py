"""The shared training loop: accumulation, sharding, schedule, selection, no file I/O."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn

from training.config import RuntimeConfig
from training.loop import LoopConfig, cosine_lr_lambda, shard_rows, train_loop
from training.models import frozen_dtype, make_accelerator

ROWS = [(torch.randn(4, generator=torch.Generator().manual_seed(i)), float(i % 3)) for i in range(22)]


def _batch(rows: list[Any]) -> dict[str, torch.Tensor]:
    return {"x": torch.stack([r[0] for r in rows]), "y": torch.tensor([r[1] for r in rows])}


def _mse(model: Any, b: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    err = model(b["x"]).squeeze(-1) - b["y"]
    return (err**2).mean(), {"abs_err": err.abs().mean().item()}


def _train(accum: int, epochs: int = 2, **kw: Any) -> Any:
    torch.manual_seed(0)
    acc = make_accelerator(RuntimeConfig(device="cpu"))
    cfg = LoopConfig(epochs=epochs, batch_size=8, lr=0.05, grad_accum_steps=accum, seed=3)
    return train_loop(acc, nn.Linear(4, 1), ROWS, _batch, _mse, cfg, stage="t", **kw)


def test_accumulation_gives_the_same_steps_as_one_batch() -> None:
    one, four = _train(1), _train(4)
    assert one.steps == four.steps == 6  # ceil(22 / 8) * 2 epochs, the short last batch included
    assert max(abs(a - b) for a, b in zip(one.losses, four.losses, strict=True)) < 1e-6
    for p, q in zip(one.model.parameters(), four.model.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6)


def test_selection_keeps_the_best_epoch_and_history() -> None:
    scores = {0: 0.5, 1: 0.9, 2: 0.1}
    res = _train(1, epochs=3, on_epoch_end=lambda e, m: {"score": scores[e]}, select_key=lambda m: m["score"])
    assert res.best_epoch == 1 and [h["score"] for h in res.history] == [0.5, 0.9, 0.1]
    assert res.best_state is not None and not torch.equal(res.best_state["weight"], res.model.weight.detach())
    last = _train(1, epochs=2)
    assert last.best_epoch == 1 and torch.equal(last.best_state["weight"], last.model.weight.detach())


def test_shards_are_disjoint_and_cover_the_batch() -> None:
    rows = list(range(10, 21))
    parts = [shard_rows(rows, r, 3, 2) for r in range(3)]
    flat = sorted(i for p in parts for mb in p for i in mb)
    assert flat == rows and all(len(p) == 2 for p in parts)
    assert shard_rows([5], 1, 2, 1) == [[5]]  # a rank without rows still joins (weighted 0 by the loop)


def test_cosine_schedule_ends_at_min_ratio() -> None:
    f = cosine_lr_lambda(100, 0.1, warmup=10)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0) and f(10) == pytest.approx(1.0)
    assert f(100) == pytest.approx(0.1) and f(55) == pytest.approx(0.55)


def test_progress_and_stop_go_through_callbacks() -> None:
    from training.callbacks import Callbacks, StopTraining

    cbs = Callbacks()
    _train(1, epochs=1, callbacks=cbs)
    assert [h[1] for h in cbs.history] == [1, 2, 3] and "abs_err" in cbs.history[0][2]

    class Stop:
        def should_stop(self) -> bool:
            return True

    with pytest.raises(StopTraining):
        _train(1, callbacks=Callbacks([Stop()]))


def test_frozen_models_are_bf16_only_on_a_gpu_in_bf16() -> None:
    assert (
        frozen_dtype(SimpleNamespace(device=torch.device("cuda", 0), mixed_precision="bf16"))
        == torch.bfloat16
    )
    assert (
        frozen_dtype(SimpleNamespace(device=torch.device("cuda", 0), mixed_precision="no")) == torch.float32
    )
    assert frozen_dtype(SimpleNamespace(device=torch.device("cpu"), mixed_precision="bf16")) == torch.float32


def test_gradient_checkpointing_gives_the_same_losses(micro_base: Any) -> None:
    from training.models import load_policy

    rows = [torch.randint(0, 500, (12,), generator=torch.Generator().manual_seed(i)) for i in range(8)]

    def lm_loss(model: Any, b: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        return model(input_ids=b["ids"], labels=b["ids"]).loss, {}

    def run(ckpt: bool) -> Any:
        torch.manual_seed(0)
        model, _ = load_policy(micro_base, dropout=0.0)
        cfg = LoopConfig(epochs=1, batch_size=4, lr=1e-3, gradient_checkpointing=ckpt)
        acc = make_accelerator(RuntimeConfig(device="cpu"))
        return train_loop(acc, model, rows, lambda r: {"ids": torch.stack(r)}, lm_loss, cfg, stage="lm")

    plain, ckpt = run(False), run(True)
    flag = (
        "is_activation_checkpointing"
        if hasattr(plain.model, "is_activation_checkpointing")
        else "is_gradient_checkpointing"
    )
    assert getattr(ckpt.model, flag) and not getattr(plain.model, flag)
    assert max(abs(a - b) for a, b in zip(plain.losses, ckpt.losses, strict=True)) < 1e-5


def test_make_adamw_uses_the_fused_kernel_on_cpu_and_matches_the_default() -> None:
    """The loop's optimizer is torch's fused AdamW on CPU and takes the same step as the unfused one."""
    from training.loop import make_adamw

    torch.manual_seed(0)
    a = torch.nn.Linear(4, 3)
    b = torch.nn.Linear(4, 3)
    b.load_state_dict(a.state_dict())
    fused = make_adamw(a.parameters(), lr=0.1, betas=(0.9, 0.999), weight_decay=0.01)
    plain = torch.optim.AdamW(b.parameters(), lr=0.1, betas=(0.9, 0.999), weight_decay=0.01)
    assert fused.defaults["fused"] is True
    x = torch.randn(5, 4)
    for m, opt in ((a, fused), (b, plain)):
        for _ in range(3):
            opt.zero_grad()
            m(x).square().sum().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6)


def test_make_adamw_falls_back_where_the_fused_kernel_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    """A torch whose AdamW refuses fused=True for the parameters yields the default AdamW, not an error."""
    from training import loop

    real = torch.optim.AdamW

    def refusing(params: Any, **kw: Any) -> torch.optim.AdamW:
        if kw.pop("fused", False):
            raise RuntimeError("fused=True requires all the params to be on a supported device")
        return real(params, **kw)

    monkeypatch.setattr(loop.torch.optim, "AdamW", refusing)
    opt = loop.make_adamw(nn.Linear(2, 2).parameters(), lr=0.1)
    assert not opt.defaults.get("fused")


def test_epoch_batches_without_lengths_are_consecutive_slices_of_the_seeded_shuffle() -> None:
    """No lengths: the historical order (shuffle, then consecutive slices), so stages keep their results."""
    import random

    from training.loop import epoch_batches

    order = list(range(23))
    random.Random(5).shuffle(order)
    assert epoch_batches(23, 4, random.Random(5)) == [order[i : i + 4] for i in range(0, 23, 4)]


def test_epoch_batches_length_grouped_cover_every_row_once_and_cut_padding() -> None:
    """Length-grouped batches hold each example exactly once and pad far less than random batches."""
    import random

    from training.loop import epoch_batches

    lengths = [random.Random(i).randint(5, 60) for i in range(400)]
    grouped = epoch_batches(400, 8, random.Random(0), lengths, chunk=50)
    plain = epoch_batches(400, 8, random.Random(0))
    assert sorted(i for b in grouped for i in b) == list(range(400))
    assert all(len(b) <= 8 for b in grouped)

    def padded(batches: list[list[int]]) -> int:
        return sum(max(lengths[i] for i in b) * len(b) for b in batches)

    assert padded(grouped) < 0.8 * padded(plain)
    assert grouped != sorted(grouped, key=lambda b: lengths[b[0]])  # batch order stays shuffled
