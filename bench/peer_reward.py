"""DPO's implicit reward as a TRL reward function: the score our PPO gets (training.implicit, rollout).

Imports only torch and transformers, so the TRL venv of bench/setup_trl.sh can load it without
this repository's dependencies; tests/training/test_bench_alignment_peer.py checks that it gives
training.implicit's scores. A sequence's score is beta times the summed log-ratio of the DPO policy
to its reference over every token after the first, plus the bias that centres demonstrations, minus
`missing_eos_penalty` when the completion never ends (PPOConfig.missing_eos_penalty: the same rule).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM


class ImplicitRewardFunction:
    """`fn(prompts=..., completions=..., completion_ids=..., prompt_ids=...) -> list[float]`, TRL's
    reward-function convention; prompt_ids is a dataset column (TRL passes extra columns through)."""

    __name__ = "implicit_reward"  # TRL names a reward function's logged columns after it

    def __init__(self, rm_dir: str | Path, eos_id: int, missing_eos_penalty: float = 1.0, batch: int = 64):
        rm_dir = Path(rm_dir)
        info = json.loads((rm_dir / "implicit_reward.json").read_text())
        self.policy = AutoModelForCausalLM.from_pretrained(rm_dir / "policy").eval()
        self.reference = AutoModelForCausalLM.from_pretrained(rm_dir / "reference").eval()
        self.beta, self.bias = float(info["beta"]), float(info["bias"])
        self.eos_id, self.penalty, self.batch = eos_id, missing_eos_penalty, batch

    @staticmethod
    def _summed_logprobs(model: Any, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        lp = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
        return (lp * mask[:, 1:]).sum(-1)

    @torch.no_grad()
    def score(self, sequences: list[list[int]]) -> list[float]:
        """Implicit reward of whole token sequences (prompt + completion), right-padded in batches."""
        out: list[float] = []
        for i in range(0, len(sequences), self.batch):
            part = sequences[i : i + self.batch]
            width = max(len(s) for s in part)
            ids = torch.tensor([s + [0] * (width - len(s)) for s in part])
            mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in part])
            ratio = self._summed_logprobs(self.policy, ids, mask) - self._summed_logprobs(
                self.reference, ids, mask
            )
            out.extend((self.beta * ratio + self.bias).tolist())
        return out

    def __call__(
        self, prompts: list[Any], completions: list[Any], completion_ids: list[list[int]], **kwargs: Any
    ) -> list[float]:
        """One score per completion; the prompts' token ids come from the dataset's prompt_ids column."""
        seqs = [list(p) + list(c) for p, c in zip(kwargs["prompt_ids"], completion_ids, strict=True)]
        ended = [bool(c) and c[-1] == self.eos_id for c in completion_ids]
        return [s - (0.0 if e else self.penalty) for s, e in zip(self.score(seqs), ended, strict=True)]
