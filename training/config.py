"""Config dataclasses for every stage; defaults follow instructgpt.md where the paper gives a number."""

from __future__ import annotations

import math
import typing
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any


class Settings:
    """What every settings dataclass offers: a plain dict, for manifests and stored completions."""

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (nested settings as dicts)."""
        return asdict(self)  # type: ignore[call-overload]


class StageSettings(Settings):
    """A training stage's settings: out-of-range values (RANGES, CHOICES) refused on construction."""

    def __post_init__(self) -> None:
        check_ranges(self)


@dataclass
class RuntimeConfig:
    """Device and precision, handed to accelerate."""

    device: str = "auto"  # "auto" | "cpu" | "cuda"
    mixed_precision: str = "auto"  # "auto" (bf16 on GPU, fp32 on CPU) | "no" | "bf16" | "fp16"
    seed: int = 0
    threads: int | None = None  # torch CPU threads; None leaves torch's default


@dataclass
class SFTConfig(StageSettings):
    """Supervised fine-tuning on demonstrations (§3.5, App. C.1)."""

    epochs: int = 16
    lr: float = 3e-4  # 1e-4 underfit small policies (greedy oracle score 0.10 against 0.32 at 3e-4)
    batch_size: int = 32
    min_lr_ratio: float = 0.1  # cosine decay to 10 % of peak, no warm-up
    dropout: float = 0.2  # residual dropout
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.0
    max_length: int = 128
    group_by_length: bool = True  # batches of similar length (less padding; the epoch order stays random)
    eval_every_epoch: bool = True
    select_by: str = (
        "auto"  # "auto": RM score if a reward model is given else valid loss | "rm" | "loss" | "last"
    )
    rm_eval_prompts: int = 64
    rm_eval_max_new_tokens: int = 32
    min_steps: int = 0  # more epochs when `epochs` gives fewer optimizer steps (a small data set)
    grad_accum_steps: int = 1  # micro-batches per process per step; batch_size stays the global batch
    max_grad_norm: float | None = None  # clip the global gradient norm (None: no clipping)
    gradient_checkpointing: bool = False
    lora_r: int = 0  # LoRA rank (peft); 0 = train every weight
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_target_modules: str = "all-linear"  # or a comma list, e.g. "q_proj,v_proj"
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)


@dataclass
class RewardConfig(StageSettings):
    """Reward model on grouped comparisons (§3.5, App. C.2)."""

    epochs: int = 1
    lr: float = 5e-5
    batch_size: int = 64  # prompts (comparison groups) per step, not pairs
    min_lr_ratio: float = 0.1
    dropout: float = 0.0
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.0
    max_length: int = 128
    center_on_demonstrations: bool = True  # bias so labeler demonstrations score 0 on average
    min_steps: int = 0  # more epochs when `epochs` gives fewer optimizer steps (a small data set)
    grad_accum_steps: int = 1  # micro-batches per process per step; batch_size stays the global batch
    max_grad_norm: float | None = None  # clip the global gradient norm (None: no clipping)
    gradient_checkpointing: bool = False
    lora_r: int = 0  # LoRA rank (peft); 0 = train every weight
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_target_modules: str = "all-linear"  # or a comma list, e.g. "q_proj,v_proj"
    edit_pair_weight: float = 1.0  # weight of edit pairs (edited > original); 0 leaves them out
    early_stopping: bool = True  # keep the weights with the best accuracy on the valid split (if any)
    # ... when it holds at least this many pairs. On fewer, the best of many checks is noise: on a
    # demo's 36 valid pairs (95 % interval +-16 points, every check near chance) it kept step 1, an
    # untrained head, in 3 of 8 seeds, and held-out test accuracy fell from 0.61 to 0.47.
    early_stopping_min_pairs: int = 100
    eval_every: int = 0  # steps between validation checks; 0 = four times per epoch
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)


@dataclass
class PPOConfig(StageSettings):
    """PPO against the reward model with a per-token KL penalty (§3.5, App. C.3-C.4)."""

    total_episodes: int = 256_000
    # At least this many episodes per train prompt (whole rollout batches): a fixed count that suits
    # a few dozen prompts is a handful of iterations, and no optimisation at all, on a few thousand.
    min_prompt_passes: float = 0.0
    rollout_batch_size: int = 512
    minibatch_size: int = 64
    micro_batch_size: int = 64  # rows per forward in rollouts (generate, score) and per backward; TRL: 64
    ppo_epochs: int = 1
    lr: float = 9.65e-6  # policy LR; the paper sweeps 2.55e-6..2.55e-5 without stating the final one
    value_lr: float = 9.65e-6
    warmup_steps: int = 10  # constant LR after a short warm-up
    kl_coef: float = 0.02  # beta
    clip_range: float = 0.2
    clip_range_value: float = 0.2
    vf_coef: float = 0.5
    gamma: float = 1.0
    lam: float = 0.95
    whiten_advantages: bool = True
    # "gae": a value model's GAE (the paper's PPO). "rloo": no critic; each response's KL-penalised
    # return minus the mean return of the other n_samples_per_prompt - 1 responses to its prompt
    # (Ahmadian et al. 2024; TRL's RLOOTrainer, OpenRLHF's "rloo"). The value model is then loaded but
    # neither run nor trained (dropping it altogether would save its memory too).
    advantage_estimator: str = "gae"
    n_samples_per_prompt: int = 1  # responses per picked prompt in a rollout; "rloo" needs at least 2
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 32
    missing_eos_penalty: float = 1.0  # subtracted from the RM score of responses that never end
    # With an implicit reward model (a DPO policy and its reference): each response token is rewarded
    # with its own beta * log-ratio, the rest of the score on the last token (RTO, Zhong et al. 2024),
    # instead of the whole score on the last token. The same total per sequence; a scalar RM ignores it.
    dense_reward: bool = False
    ptx_coef: float = 0.0  # PPO-ptx gamma; the paper's PPO-ptx uses 27.8
    ptx_batch_size: int = 8
    ptx_data: str | None = None  # jsonl of {"text": ...} or a .txt file; None = the simulated world's corpus
    ema_decay: float | None = 0.992  # weight EMA of the policy; None disables
    max_grad_norm: float = 1.0
    max_prompt_length: int = 64
    lora_r: int = 0  # LoRA rank (peft); 0 = train every weight
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_target_modules: str = "all-linear"  # or a comma list, e.g. "q_proj,v_proj"
    gradient_checkpointing: bool = False
    checkpoint_every: int = 0  # iterations between resumable checkpoints in <out>.checkpoint; 0 = none
    resume: bool = True  # continue from <out>.checkpoint when it exists and was written with this config
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def check_fields(self) -> None:
        """Settings that are only valid together."""
        k = self.n_samples_per_prompt
        if self.advantage_estimator == "rloo" and k < 2:
            raise ValueError(f"advantage_estimator 'rloo' needs n_samples_per_prompt >= 2, not {k}")
        if self.rollout_batch_size % k:
            raise ValueError(
                f"rollout_batch_size {self.rollout_batch_size} is not a multiple of n_samples_per_prompt {k}"
            )

    def episodes_for(self, n_prompts: int) -> int:
        """Episodes to run on n_prompts train prompts: total_episodes, raised to min_prompt_passes
        episodes per prompt rounded up to whole rollout batches."""
        per_rollout = max(1, self.rollout_batch_size)
        floor = math.ceil(self.min_prompt_passes * n_prompts / per_rollout) * per_rollout
        return max(self.total_episodes, floor)


@dataclass
class ImplicitRewardConfig(StageSettings):
    """A DPO policy's implicit reward written as a reward model (training.implicit)."""

    beta: float | None = None  # None: the DPO run's own beta, from its manifest
    max_length: int = 128  # tokens per demonstration when centring the scores on them
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)


@dataclass
class DPOConfig(StageSettings):
    """Direct preference optimisation on the batch's comparisons (Rafailov et al. 2023).

    Defaults follow the DPO paper where it gives a number (beta 0.1, batch 64, LR 1e-6 with a
    150-step linear warm-up); the optimiser is AdamW as in TRL's DPOTrainer, not the paper's RMSprop.
    """

    epochs: int = 1
    lr: float = 1e-6
    batch_size: int = 64  # prompts (comparison groups) per step when grouped, else pairs per step
    warmup_steps: int = 150
    min_lr_ratio: float = 1.0  # 1.0: constant after the warm-up; below 1, cosine decay to this ratio
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    dropout: float = 0.0  # the reference log-probs are computed without dropout
    beta: float = 0.1  # strength of the implicit KL constraint
    loss_type: str = "sigmoid"  # "sigmoid" (DPO) | "ipo" (Azar et al. 2023)
    label_smoothing: float = 0.0  # conservative DPO: the assumed probability that a label is flipped
    rpo_alpha: float = 0.0  # RPO: + this x the chosen completions' per-token NLL (TRL's rpo_alpha); 0 = off
    grouped: bool = True  # each completion forwarded once per prompt, its pairs form one batch element
    edit_pair_weight: float = 1.0  # weight of edit pairs (edited > original); 0 leaves them out
    eval_every_epoch: bool = True  # implicit-reward accuracy on the monitor groups after every epoch
    max_length: int = 128
    max_grad_norm: float = 1.0
    min_steps: int = 0  # more epochs when `epochs` gives fewer optimizer steps (a small data set)
    grad_accum_steps: int = 1  # micro-batches per process per step; batch_size stays the global batch
    gradient_checkpointing: bool = False
    lora_r: int = 0  # LoRA rank (peft); 0 = train every weight
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_target_modules: str = "all-linear"  # or a comma list, e.g. "q_proj,v_proj"
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)


@dataclass
class SamplingParams(Settings):
    """How completions are sampled; recorded with each completion."""

    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 48
    seed: int | None = None


@dataclass
class BaseModelConfig(Settings):
    """A tokenizer and GPT-2-style causal LM built from a config and pre-trained on the world corpus."""

    n_embd: int = 96
    n_layer: int = 3
    n_head: int = 4
    n_positions: int = 256
    vocab_size: int = 512
    corpus_docs: int = 20_000
    steps: int = 400
    batch_size: int = 32
    seq_len: int = 64
    lr: float = 2e-3
    seed: int = 0
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)


# The range of every numeric stage setting, by name (a name means the same thing in every stage):
# (lowest, highest, whether the lowest itself is allowed). None (where a setting allows it) is not checked.
_AT_LEAST_1 = (1, None, True)
_AT_LEAST_0 = (0, None, True)
_ABOVE_0 = (0, None, False)
_FRACTION = (0, 1, True)  # 0 to 1, both allowed
RANGES: dict[str, tuple[float, float | None, bool]] = {
    **dict.fromkeys(
        ("epochs", "batch_size", "max_length", "grad_accum_steps", "total_episodes", "rollout_batch_size",
         "minibatch_size", "micro_batch_size", "ppo_epochs", "max_new_tokens", "max_prompt_length",
         "ptx_batch_size", "rm_eval_prompts", "rm_eval_max_new_tokens", "lora_alpha", "n_samples_per_prompt"),
        _AT_LEAST_1,
    ),
    **dict.fromkeys(
        ("min_steps", "warmup_steps", "weight_decay", "lora_r", "kl_coef", "vf_coef", "ptx_coef",
         "missing_eos_penalty", "edit_pair_weight", "early_stopping_min_pairs", "eval_every",
         "checkpoint_every", "min_prompt_passes", "rpo_alpha"),
        _AT_LEAST_0,
    ),
    **dict.fromkeys(
        ("lr", "value_lr", "beta", "clip_range", "clip_range_value", "temperature", "max_grad_norm"), _ABOVE_0
    ),
    **dict.fromkeys(("min_lr_ratio", "gamma", "lam", "ema_decay", "top_p"), _FRACTION),
    **dict.fromkeys(("dropout", "lora_dropout"), (0, 0.99, True)),
    "label_smoothing": (0, 0.49, True),  # conservative DPO's flip probability: below one half
}  # fmt: skip
CHOICES: dict[str, tuple[str, ...]] = {
    "select_by": ("auto", "rm", "loss", "last"),
    "loss_type": ("sigmoid", "ipo"),
    "advantage_estimator": ("gae", "rloo"),
}


def check_ranges(cfg: Any) -> None:
    """A ValueError naming the first of the config's settings outside RANGES or CHOICES."""
    for name, value in asdict(cfg).items():
        if name in CHOICES and value not in CHOICES[name]:
            raise ValueError(f"{name} must be one of {', '.join(CHOICES[name])}, not {value!r}")
        if name not in RANGES or value is None or not isinstance(value, int | float):
            continue
        low, high, low_ok = RANGES[name]
        if value < low or (value == low and not low_ok) or (high is not None and value > high):
            raise ValueError(f"{name} must be {_range_text(low, high, low_ok)}, not {value}")
    if hasattr(cfg, "check_fields"):
        cfg.check_fields()


def _range_text(low: float, high: float | None, low_ok: bool) -> str:
    if high is None:
        return f"{low} or more" if low_ok else f"above {low}"
    return f"from {low} to {high}"


# Per-stage settings by preset, shared by the web app's rounds and `python -m training --preset`.
# "quick": small enough for a round on a CPU model of a few million parameters to finish in minutes.
# A quick round trains on a demo's few dozen labels: epochs alone would give a handful of steps
# (10 demonstrations at batch 16 for 4 epochs is 4 steps), so SFT, RM and DPO get a floor of steps.
# PPO's 256 episodes suit such a round; on a batch of a thousand prompts and more they are 4 iterations
# that leave the policy where SFT left it (`python -m bench.cli_world --ppo min_prompt_passes=0`), so
# PPO runs at least 3 episodes per train prompt (the alignment benchmark runs 8 192 on about 2 700).
QUICK_PRESET: dict[str, dict[str, Any]] = {
    "sft": {"epochs": 4, "min_steps": 64, "lr": 3e-4, "batch_size": 16, "dropout": 0.1, "max_length": 96},
    "reward": {"epochs": 1, "min_steps": 32, "lr": 1e-4, "batch_size": 16, "max_length": 96},
    "ppo": {
        "total_episodes": 256,
        "min_prompt_passes": 3,
        "rollout_batch_size": 64,
        "minibatch_size": 16,
        "lr": 2e-5,
        "value_lr": 2e-5,
        "max_new_tokens": 24,
        "checkpoint_every": 2,
        # No critic: 4 responses per prompt, each against the mean of the other 3 (RLOO). On the
        # second task world (bench.cli_world, 2 seeds) it beat the value model's GAE by +0.028 and
        # +0.048 against the implicit reward, and by +0.060 against the scalar-head RM, which GAE's
        # PPO gamed (over-refusal 29.5 % against 4.8 %); on the benchmark's world +0.010 [0.000,
        # 0.019] at this preset's LR, KL and length (bench/README.md, "Our PPO against TRL's RLOO").
        "advantage_estimator": "rloo",
        "n_samples_per_prompt": 4,
        "whiten_advantages": False,
    },
    "dpo": {
        "epochs": 2,
        "min_steps": 32,
        "lr": 1e-4,
        "beta": 0.1,
        "warmup_steps": 0,
        "batch_size": 16,
        "max_length": 96,
        # RPO's NLL term: without it the alignment benchmark's DPO policy lost to SFT (-0.055, win-rate
        # 35.2 %); with 0.5 it gains +0.103 (57.6 %) at the same PPO gain (bench/README.md, section 1)
        "rpo_alpha": 0.5,
    },
}
# The paper's numbers are the library's defaults.
PAPER_PRESET: dict[str, dict[str, Any]] = {
    "sft": {},
    "reward": {},
    "ppo": {"checkpoint_every": 50},
    "dpo": {},
}
PRESETS: dict[str, dict[str, dict[str, Any]]] = {"quick": QUICK_PRESET, "paper": PAPER_PRESET}


def apply_overrides(cfg: Any, pairs: list[str]) -> Any:
    """Set dataclass fields from "key=value" strings (nested runtime.* allowed), coercing types."""
    for pair in pairs:
        key, eq, raw = pair.partition("=")
        if not eq:
            raise SystemExit(f"a setting is KEY=VALUE, not {pair!r}")
        target = cfg
        *path, name = key.split(".")
        for part in path:
            target = getattr(target, part, None)
        hints = typing.get_type_hints(type(target)) if is_dataclass(target) else {}
        if name not in hints:
            raise SystemExit(f"unknown setting {key!r}")
        current = getattr(target, name)
        value: Any
        try:
            if raw.lower() in ("none", "null"):
                value = None
            elif isinstance(current, bool):
                value = raw.lower() in ("1", "true", "yes")
            elif isinstance(current, tuple):
                value = tuple(float(x) for x in raw.split(","))
            elif isinstance(current, int) or (current is None and "int" in str(hints[name])):
                value = int(raw)
            elif isinstance(current, float) or (current is None and "float" in str(hints[name])):
                value = float(raw)
            else:
                value = raw
        except ValueError:
            kind = hints[name].__name__ if isinstance(hints[name], type) else str(hints[name])
            raise SystemExit(f"setting {key!r}: {raw!r} is not a valid {kind}") from None
        setattr(target, name, value)
    if isinstance(cfg, StageSettings):
        try:
            check_ranges(cfg)
        except ValueError as e:
            raise SystemExit(f"setting {e}") from None
    return cfg
