"""Timed windows and a per-phase profile for the throughput workers (ours and the TRL peers alike).

    win = Window(seconds=20)               # warm-up (>= 3 steps and >= 2 s) is excluded
    prof = Profile.install(model_dir)       # counts tokens/sequences of training forwards, times phases
    ... each step: win.tick(pairs=...); stop when win.done() ...
    print("RESULT " + json.dumps(win.result(prof)))

The profile patches, at class level, the model's backbone forward (tokens and sequences of forwards
run with gradients, forward time with and without gradients), accelerate's `Accelerator.backward`,
every optimizer's step (a global torch hook) and `GenerationMixin.generate`; the rest of the window
is "other" (batching, tokenising, loss, Python). This file imports no training/ code, so the TRL
venvs can import it too.
"""

from __future__ import annotations

import functools
import os
import resource
import time
from typing import Any

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook


class WindowDone(Exception):
    """Raised from a peer's callback to leave its training loop once the window is complete."""


class Profile:
    """Counters and per-phase seconds, accumulated while `on` (the timed window)."""

    current: Profile | None = None

    def __init__(self) -> None:
        self.on = False
        self.tokens = 0
        self.sequences = 0
        self.secs: dict[str, float] = {
            "generate": 0.0,
            "forward_train": 0.0,
            "forward_nograd": 0.0,
            "backward": 0.0,
            "optimizer": 0.0,
        }
        self._depth = 0  # inside generate(): forwards are part of generation
        self._opt_t = 0.0

    @classmethod
    def install(cls, model_dir: str) -> Profile:
        """Patch the backbone class of the model at model_dir, accelerate's backward, optimizers, generate."""
        from transformers import AutoConfig, AutoModel

        prof = cls()
        cls.current = prof
        backbone = type(AutoModel.from_config(AutoConfig.from_pretrained(model_dir)))
        backbone.forward = prof._wrap_forward(backbone.forward)  # type: ignore[method-assign]
        import accelerate
        from transformers.generation.utils import GenerationMixin

        accelerate.Accelerator.backward = prof._timed(accelerate.Accelerator.backward, "backward")  # type: ignore[method-assign]
        GenerationMixin.generate = prof._timed(GenerationMixin.generate, "generate", nest=True)  # type: ignore[method-assign]
        register_optimizer_step_pre_hook(prof._opt_pre)
        register_optimizer_step_post_hook(prof._opt_post)
        return prof

    def _wrap_forward(self, fn: Any) -> Any:
        @functools.wraps(fn)
        def forward(module: Any, *args: Any, **kwargs: Any) -> Any:
            if not self.on or self._depth:
                return fn(module, *args, **kwargs)
            ids = kwargs.get("input_ids", args[0] if args else None)
            mask = kwargs.get("attention_mask")
            grad = torch.is_grad_enabled()
            if grad and ids is not None:
                self.tokens += int(mask.sum()) if mask is not None and mask.dim() == 2 else ids.numel()
                self.sequences += ids.shape[0]
            t = time.perf_counter()
            out = fn(module, *args, **kwargs)
            self.secs["forward_train" if grad else "forward_nograd"] += time.perf_counter() - t
            return out

        return forward

    def _timed(self, fn: Any, key: str, nest: bool = False) -> Any:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            self._depth += nest
            try:
                return fn(*args, **kwargs)
            finally:
                self._depth -= nest
                if self.on:
                    self.secs[key] += time.perf_counter() - t

        return wrapper

    def _opt_pre(self, *_: Any) -> None:
        self._opt_t = time.perf_counter()

    def _opt_post(self, *_: Any) -> None:
        if self.on:
            self.secs["optimizer"] += time.perf_counter() - self._opt_t


class Window:
    """A timed window after a warm-up: counts units per step, done once `seconds` have passed."""

    def __init__(self, seconds: float, warmup_steps: int = 3, warmup_s: float = 2.0) -> None:
        self.seconds, self.warmup_steps, self.warmup_s = seconds, warmup_steps, warmup_s
        self.t_first: float | None = None
        self.t_start: float | None = None
        self.t_last = 0.0
        self.cpu_start = self.cpu_last = 0.0  # process CPU time (all threads): robust to other load
        self.steps = 0
        self.warm_steps = 0
        self.units: dict[str, float] = {}
        self.load_start = os.getloadavg()[0]

    def tick(self, **units: float) -> None:
        """Call once per step (optimizer step, rollout or sampling round) with the units it did."""
        now = time.perf_counter()
        if self.t_first is None:
            self.t_first = now
        if self.t_start is None:
            self.warm_steps += 1
            if self.warm_steps >= self.warmup_steps and now - self.t_first >= self.warmup_s:
                self.t_start = self.t_last = now
                self.cpu_start = self.cpu_last = time.process_time()
                if Profile.current is not None:
                    Profile.current.on = True
                    Profile.current.tokens = Profile.current.sequences = 0
            return
        self.steps += 1
        self.t_last, self.cpu_last = now, time.process_time()
        for k, v in units.items():
            self.units[k] = self.units.get(k, 0.0) + v

    def done(self) -> bool:
        """True once the timed window has lasted `seconds`."""
        return self.t_start is not None and self.t_last - self.t_start >= self.seconds

    def result(self) -> dict[str, Any]:
        """Rates per second over the window, the profile's split and counts, peak RSS, load."""
        secs = self.t_last - (self.t_start or self.t_last)
        res: dict[str, Any] = {"seconds": secs, "steps": self.steps, "warmup_steps": self.warm_steps}
        units = dict(self.units)
        prof = Profile.current
        if prof is not None:
            prof.on = False
            units.setdefault("tokens", prof.tokens)
            units.setdefault("sequences", prof.sequences)
            split = dict(prof.secs)
            split["other"] = max(0.0, secs - sum(split.values()))
            res["profile_pct"] = {k: round(100 * v / max(secs, 1e-9), 1) for k, v in split.items()}
        cpu = self.cpu_last - self.cpu_start
        res["cpu_seconds"] = cpu
        for k, v in units.items():
            res[f"{k}_per_s"] = v / max(secs, 1e-9)
            res[f"{k}_per_cpu_s"] = v / max(cpu, 1e-9)  # per second of this process's CPU time
        res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        res["load"] = [round(self.load_start, 2), round(os.getloadavg()[0], 2)]
        return res
