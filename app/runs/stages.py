"""The one description of a round's training stages and of the methods (stage sequences) ops choose.

The executor's dispatch and choice of inputs, the round request's validation, the ops form, the
evaluation's final policy and the presets all read this module; nothing else names a stage.
Config classes and runners are import paths, so the web process never imports torch: a config
class lives in `training.config` (plain dataclasses), a runner is imported by the worker only.

Adding a stage: write its runner
`run_x(config, batch_dir, <policy_arg>, out_dir, callbacks, run, method)` (the round's `method` goes
into the manifest, through training.checkpoints.write_model_dir or write_policy_dir) and its config
dataclass, add one `register(Stage(...))` below and put it in a method's sequence.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from app.enums import ModelKind

EVALUATE = "evaluate"  # always follows the training stages; run by the executor itself
PRESET_NAMES = ("quick", "paper")  # quick: minutes on a CPU; paper: the training library's defaults


def import_path(path: str) -> Any:
    """The object at "package.module:attribute"."""
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def _type_ok(value: Any, default: Any) -> bool:
    """Whether a setting's value (from JSON) has its default's type: ints count as floats, lists of
    numbers as tuples; a setting whose default is None takes anything."""
    if default is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int | float):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(default, tuple):
        return isinstance(value, list) and all(isinstance(v, int | float) for v in value)
    return isinstance(value, type(default))


@dataclass(frozen=True)
class Stage:
    """One training stage: what it reads, what it writes and how the worker calls it."""

    name: str
    label: str
    config: str  # "training.config:SFTConfig": a dataclass in a torch-free module
    runner: str  # "training.sft:run_sft": imported by the worker only
    produces: ModelKind
    deployable: bool  # its output is a policy a round may deploy
    data: tuple[str, ...]  # the export files it trains on
    policy_arg: str  # the runner's keyword for its input policy (the round's latest policy)
    reward_arg: str | None = None  # the runner's keyword for a reward model, if it takes one
    reward_required: bool = False  # it cannot run without that reward model
    path_settings: tuple[str, ...] = ()  # settings naming a file the worker reads (app/runs/paths.py)
    # runner keyword -> "module:attribute" of a task-specific callable the worker hands it
    hooks: dict[str, str] = field(default_factory=dict)
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)  # over training.config.PRESETS

    def config_class(self) -> type:
        """The config dataclass (training.config is plain Python: safe in the web process)."""
        cls: type = import_path(self.config)
        return cls

    def defaults(self) -> dict[str, Any]:
        """Setting names and defaults that a round may set (the worker's runtime excluded)."""
        out: dict[str, Any] = {}
        for f in fields(self.config_class()):
            if f.name == "runtime":  # device and precision belong to the worker, not to the round
                continue
            if f.default is not MISSING:
                out[f.name] = f.default
            elif f.default_factory is not MISSING:
                out[f.name] = f.default_factory()
            else:
                out[f.name] = None
        return out

    def check_settings(self, values: dict[str, Any]) -> None:
        """ValueError naming the first setting a round may not use: an unknown key, a value of the
        wrong type, or one the config's own checks refuse (e.g. a learning rate below 0)."""
        known = self.defaults()
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(
                f"unknown {'key' if len(unknown) == 1 else 'keys'} {', '.join(unknown)}; "
                f"known keys are {', '.join(sorted(known))}"
            )
        for key, item in values.items():
            if not _type_ok(item, known[key]):
                raise ValueError(f"{key} should look like {json.dumps(known[key])}, not {item!r}")
        self.build_config(values)

    def build_config(self, values: dict[str, Any]) -> Any:
        """The config object from a round's settings (unknown keys ignored, lists to tuples)."""
        known = self.defaults()
        kwargs = {
            k: tuple(v) if isinstance(known[k], tuple) and isinstance(v, list) else v
            for k, v in values.items()
            if k in known
        }
        return self.config_class()(**kwargs)

    def run_fn(self) -> Any:
        """The runner (imports the training library: call it in the worker only)."""
        return import_path(self.runner)


@dataclass(frozen=True)
class Method:
    """A named sequence of stages that a round runs (or a contiguous part of it)."""

    name: str
    label: str
    stages: tuple[str, ...]
    description: str


STAGES: dict[str, Stage] = {}
METHODS: dict[str, Method] = {}


def register(stage: Stage) -> Stage:
    """Add (or replace) a stage."""
    STAGES[stage.name] = stage
    return stage


def register_method(method: Method) -> Method:
    """Add (or replace) a method; its stages must be registered."""
    missing = [s for s in method.stages if s not in STAGES]
    if missing:
        raise ValueError(f"method {method.name}: unknown stages {missing}")
    METHODS[method.name] = method
    return method


def get(name: str) -> Stage:
    """A stage by name (KeyError for an unknown one)."""
    return STAGES[name]


def label(name: str) -> str:
    """A stage's label for people (the evaluation included; unknown names as they are)."""
    if name == EVALUATE:
        return "Evaluation"
    return STAGES[name].label if name in STAGES else name


def labels() -> dict[str, str]:
    """Every stage's label, the evaluation included."""
    return {**{s.name: s.label for s in STAGES.values()}, EVALUATE: label(EVALUATE)}


def method_stages(method: str, chosen: list[str]) -> list[str]:
    """Validate a choice of stages for a method: a non-empty contiguous part of its sequence."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}")
    seq = list(METHODS[method].stages)
    names = [s for s in chosen if s != EVALUATE]
    if not names:
        raise ValueError("choose at least one stage")
    unknown = [s for s in names if s not in seq]
    if unknown:
        raise ValueError(f"{unknown[0]} is not a stage of {METHODS[method].label} ({describe(method)})")
    idx = [seq.index(s) for s in names]
    if idx != list(range(idx[0], idx[0] + len(idx))):
        raise ValueError(f"stages must be a contiguous part of {describe(method)}")
    return names


def describe(method: str) -> str:
    """A method's sequence for people: "SFT -> RM -> PPO"."""
    return " -> ".join(label(s) for s in METHODS[method].stages)


def preset_settings(preset: str) -> dict[str, dict[str, Any]]:
    """Every stage's settings under a preset."""
    library: dict[str, dict[str, dict[str, Any]]] = import_path("training.config:PRESETS")  # torch-free
    shared = library.get(preset, {})
    return {name: {**shared.get(name, {}), **s.presets.get(preset, {})} for name, s in STAGES.items()}


def presets() -> dict[str, dict[str, dict[str, Any]]]:
    """Every preset's per-stage settings."""
    return {p: preset_settings(p) for p in PRESET_NAMES}


def needs_reward_model(names: list[str]) -> bool:
    """Whether a stage needs a reward model that no earlier stage of the round produces."""
    produced = False
    for name in names:
        stage = STAGES.get(name)
        if stage is None:
            continue
        if stage.reward_required and not produced:
            return True
        produced = produced or stage.produces is ModelKind.reward
    return False


def is_deployable(name: str) -> bool:
    """Whether a stage's output is a policy a round may deploy."""
    return name in STAGES and STAGES[name].deployable


register(
    Stage(
        name="sft",
        label="SFT",
        config="training.config:SFTConfig",
        runner="training.sft:run_sft",
        produces=ModelKind.policy,
        deployable=True,
        data=("sft.jsonl",),
        policy_arg="base_model_dir",
        reward_arg="reward_model_dir",  # optional: selects the checkpoint by RM score
    )
)
register(
    Stage(
        name="reward",
        label="Reward model",
        config="training.config:RewardConfig",
        runner="training.reward:run_reward",
        produces=ModelKind.reward,
        deployable=False,
        data=("rankings.jsonl", "pairwise.jsonl", "sft.jsonl"),
        policy_arg="base_model_dir",
    )
)
register(
    Stage(
        name="ppo",
        label="PPO",
        config="training.config:PPOConfig",
        runner="training.ppo:run_ppo",
        produces=ModelKind.policy,
        deployable=True,
        data=("prompts.jsonl",),
        policy_arg="policy_dir",
        reward_arg="reward_model_dir",
        reward_required=True,
        path_settings=("ptx_data",),  # PPO-ptx pre-training text: only files under DATA_DIR
        # The simulated world's oracle score per rollout, and its corpus as PPO-ptx text when
        # ptx_data is unset (training.world.hooks.PPO_HOOKS; the library's core never imports it).
        hooks={
            "extra_metrics": "training.world.hooks:oracle_metrics",
            "ptx_docs": "training.world.hooks:pretraining_docs",
        },
    )
)
register(
    Stage(
        name="dpo",
        label="DPO",
        config="training.config:DPOConfig",
        runner="training.dpo:run_dpo",
        produces=ModelKind.policy,
        deployable=True,
        data=("rankings.jsonl", "pairwise.jsonl"),
        policy_arg="base_model_dir",
    )
)
register(
    Stage(
        name="implicit_reward",
        label="Implicit reward model",
        config="training.config:ImplicitRewardConfig",
        runner="training.implicit:run_implicit_reward",
        produces=ModelKind.reward,
        deployable=False,
        data=("sft.jsonl",),  # centred on the demonstrations
        policy_arg="dpo_dir",  # the DPO policy; its reference is the policy DPO started from
    )
)
register_method(
    Method(
        "instructgpt",
        "InstructGPT",
        ("sft", "reward", "ppo"),
        "SFT, a reward model from the rankings, then PPO against it (Ouyang et al. 2022).",
    )
)
register_method(
    Method(
        "dpo",
        "DPO",
        ("sft", "dpo"),
        "SFT, then direct preference optimisation on the rankings: no reward model, no sampling.",
    )
)
register_method(
    Method(
        "dpo_ppo",
        "DPO reward + PPO",
        ("sft", "dpo", "implicit_reward", "ppo"),
        "SFT, DPO on the rankings, the DPO policy's implicit reward as the reward model, then PPO from "
        "SFT against it (on the alignment benchmark it judged unseen prompts where a scalar-head RM "
        "did not).",
    )
)
DEFAULT_METHOD = "instructgpt"
