"""Runs one training round inside a worker: the round's stages in order, the evaluation, the deploy gate.

The executor only orchestrates: which stage runs, with which inputs (from the stage descriptions
in app/runs/stages.py), and every state change through app/runs/service.py. Only ids arrive
here; everything is reloaded from the database. The training library is imported lazily, so the
web process never loads torch. Each stage writes its model to a new directory (temp name, then
rename) and registers it in the same transaction that marks the stage succeeded, so a crash
leaves either a finished, registered stage or nothing.
"""

from __future__ import annotations

import json
import logging
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.config import get_settings
from app.db import session_scope
from app.enums import ModelKind, StageStatus
from app.exports.models import ExportBatch
from app.policies import service as registry
from app.policies.models import ModelVersion
from app.runs import service, stages
from app.runs.progress import Heartbeat, RunRecorder
from app.runs.stages import Stage
from training.checkpoints import read_manifest

log = logging.getLogger("app.runs")
EVAL_PROMPTS = 64


@dataclass
class Output:
    """A model a stage of this round registered."""

    version_id: int
    path: str
    kind: str


@dataclass
class Plan:
    """What a round needs, read once at its start."""

    run_id: int
    batch_dir: str
    parent_id: int
    parent_path: str
    config: dict[str, Any]
    stages: list[tuple[str, str]]  # (name, status)
    method: str  # the round's training method, written into every model's manifest
    outputs: dict[str, Output] = field(default_factory=dict)  # stage name -> its registered model

    def input_policy(self, before: str | None = None) -> tuple[int, str]:
        """(version id, path) of the latest policy this round produced before `before`, else the parent."""
        latest = (self.parent_id, self.parent_path)
        for name, _status in self.stages:
            if name == before:
                break
            out = self.outputs.get(name)
            if out is not None and out.kind == ModelKind.policy.value:
                latest = (out.version_id, out.path)
        return latest

    def stage_input(self, stage: Stage) -> tuple[int, str]:
        """(version id, path) of the policy a stage starts from: the latest one before it, except
        that a stage scored by an implicit reward model this round wrote (DPO's policy against its
        reference) starts from that reference, the policy the reward is relative to. PPO from the
        DPO policy with its KL to it chases pi_DPO^(1 + beta/kl_coef) / pi_ref^(beta/kl_coef); on the
        alignment benchmark that blew up (KL 33, responses that never end, bench/README.md)."""
        latest = self.input_policy(stage.name)
        reward = self.round_reward_model() if stage.reward_arg else None
        reference = implicit_reference(reward) if reward else None
        if reference is None:
            return latest
        known = [(o.version_id, o.path) for o in self.outputs.values() if o.kind == ModelKind.policy.value]
        for vid, path in [(self.parent_id, self.parent_path), *known]:
            if Path(path).resolve() == Path(reference).resolve():
                return vid, path
        return latest

    def final_policy(self) -> str | None:
        """Path of the last deployable policy this round produced."""
        paths = [
            self.outputs[n].path for n, _ in self.stages if n in self.outputs and stages.is_deployable(n)
        ]
        return paths[-1] if paths else None

    def round_reward_output(self) -> Output | None:
        """A reward model this round trained, if any."""
        return next((o for o in self.outputs.values() if o.kind == ModelKind.reward.value), None)

    def round_reward_model(self) -> str | None:
        """Path of a reward model this round trained, if any."""
        out = self.round_reward_output()
        return out.path if out else None


def implicit_reference(reward_model_dir: str) -> str | None:
    """The reference policy of an implicit reward model directory, from the manifest's
    config["implicit"] that training.implicit writes, else None (training.checkpoints is torch-free)."""
    manifest = read_manifest(reward_model_dir) or {}
    ref = manifest.get("config", {}).get("implicit", {}).get("reference")
    return str(ref) if ref else None


def _claim(run_id: int) -> Plan | None:
    with session_scope() as db:
        run = service.claim_run(db, run_id, socket.gethostname())
        if run is None:
            log.info("round %s is not queued; nothing to do", run_id)
            return None
        batch = db.get(ExportBatch, run.export_batch_id)
        parent = db.get(ModelVersion, run.parent_policy_id)
        assert batch is not None and parent is not None  # claim_run fails a round without them
        plan = Plan(
            run.id,
            batch.path,
            parent.id,
            parent.path,
            dict(run.config),
            [(s.name, s.status) for s in run.stages],
            run.method,
        )
        for s in run.stages:
            if s.status == StageStatus.succeeded.value and s.output_version_id is not None:
                v = registry.get_version(db, s.output_version_id)
                plan.outputs[s.name] = Output(v.id, v.path, v.kind)
        return plan


def _version_path(key: str, plan: Plan) -> str | None:
    vid = plan.config.get(key)
    if vid is None:
        return None
    with session_scope() as db:
        return registry.get_version(db, int(vid)).path


def evaluation_reward_model(plan: Plan) -> tuple[int, str] | None:
    """(version id, path) of the reward model that scores the evaluation: the one this round
    trained, else the one the round was started with, else the latest registered when it was
    queued (an InstructGPT round's RM scores a DPO policy); None when there is none."""
    trained = plan.round_reward_output()
    if trained is not None:
        return trained.version_id, trained.path
    for key in ("reward_model_id", "eval_reward_model_id"):
        if (path := _version_path(key, plan)) is not None:
            return int(plan.config[key]), path
    return None


def _runner_kwargs(plan: Plan, stage: stages.Stage, out: Path, recorder: RunRecorder) -> dict[str, Any]:
    """The runner's arguments, chosen from what the stage description says it consumes."""
    kwargs: dict[str, Any] = {
        "config": stage.build_config(plan.config.get(stage.name, {})),
        "batch_dir": plan.batch_dir,
        "out_dir": out,
        "callbacks": recorder,
        "run": plan.run_id,
        "method": plan.method,
        stage.policy_arg: plan.stage_input(stage)[1],
        **stage.hooks,
    }
    if stage.reward_arg is not None:
        reward = plan.round_reward_model() or _version_path("reward_model_id", plan)
        if reward is None and stage.reward_required:
            raise RuntimeError(f"{stage.label} needs a reward model and none is available")
        kwargs[stage.reward_arg] = reward
    return kwargs


def _run(stage: stages.Stage, kwargs: dict[str, Any]) -> Path:
    """Run a stage's runner here, or in TRAINING_PROCESSES processes through training.launch."""
    settings = get_settings()
    if settings.training_processes <= 1:
        return Path(stage.run_fn()(**kwargs))
    from training.launch import run_in_processes

    args = dict(kwargs)
    config, callbacks = args.pop("config"), args.pop("callbacks")
    return run_in_processes(
        stage.runner,
        config,
        args,
        settings.training_processes,
        callbacks,
        accelerate_config=settings.training_accelerate_config or None,
    )


def _run_training_stage(plan: Plan, index: int, name: str) -> None:
    stage = stages.get(name)
    with session_scope() as db:
        service.start_stage(db, plan.run_id, name)
    recorder = RunRecorder(plan.run_id, name, index, len(plan.stages))
    out = get_settings().models_dir / f"run{plan.run_id}-{name}-{uuid.uuid4().hex[:8]}"
    out.parent.mkdir(parents=True, exist_ok=True)
    path = _run(stage, _runner_kwargs(plan, stage, out, recorder))
    recorder.flush()
    with session_scope() as db:
        version = service.finish_stage(
            db,
            plan.run_id,
            name,
            kind=stage.produces,
            path=path,
            parent_id=plan.stage_input(stage)[0],
        )
        plan.outputs[name] = Output(version.id, version.path, version.kind)


def _held_out_prompts(batch_dir: str) -> list[Any]:
    rows = []
    file = Path(batch_dir) / "prompts.jsonl"
    if file.exists():
        rows = [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
    # A row carries a prompt string or a conversation (messages); training renders either.
    held = [r.get("messages") or r["prompt"] for r in rows if r.get("split") in ("valid", "test")]
    return (held or [r.get("messages") or r["prompt"] for r in rows])[:EVAL_PROMPTS]


def _compare(
    policy: str, parent: str, prompts: list[Any], reward: str | None, recorder: Any
) -> dict[str, Any]:
    """RM score and KL of the new policy against its parent, and the oracle where it applies."""
    from training.chat import prompt_text
    from training.evaluate import evaluate_policy
    from training.metrics import paired_diff_ci
    from training.world.metrics import over_refusal_rise, win_rate, world_metrics

    def world(ps: Any, texts: Any) -> dict[str, float]:  # the world's prompts are plain text
        return world_metrics([prompt_text(p) for p in ps], texts)

    new = evaluate_policy(policy, prompts, reward_model_dir=reward, reference_dir=parent, extra_metrics=world)
    recorder.on_progress(stages.EVALUATE, 1, 2, {})
    old = evaluate_policy(parent, prompts, reward_model_dir=reward, reference_dir=parent, extra_metrics=world)
    metrics = {f"new_{k}": v for k, v in new["metrics"].items() if isinstance(v, int | float)}
    metrics.update({f"parent_{k}": v for k, v in old["metrics"].items() if isinstance(v, int | float)})
    metrics["kl"] = new["metrics"].get("kl_vs_reference", 0.0)
    if "rm_score" in new["metrics"]:
        gain = paired_diff_ci(new["rm_scores"], old["rm_scores"])  # paired by prompt
        metrics["rm_gain"] = new["metrics"]["rm_score"] - old["metrics"]["rm_score"]
        metrics["rm_gain_lo"], metrics["rm_gain_hi"] = gain["lo"], gain["hi"]
    if any(k.startswith("new_oracle") for k in metrics):
        texts = [prompt_text(p) for p in prompts]
        oracle = win_rate(texts, new["completions"], old["completions"])
        metrics.update({f"oracle_{k}": v for k, v in oracle.items()})
        rise = over_refusal_rise(texts, new["completions"], old["completions"])  # paired by prompt
        if rise is not None:
            metrics.update({"over_refusal_rise": rise["mean"], "over_refusal_rise_lo": rise["lo"]})
            metrics["over_refusal_rise_hi"] = rise["hi"]
    return metrics


def _evaluate(plan: Plan, index: int) -> dict[str, Any]:
    """Evaluate the round's final policy against its parent on held-out prompts.

    The reward model is evaluation_reward_model's; its version id is recorded with the metrics
    (reward_model_id), so the run page can say which reward model the RM rows come from.
    """
    name = stages.EVALUATE
    with session_scope() as db:
        service.start_stage(db, plan.run_id, name)
    recorder = RunRecorder(plan.run_id, name, index, len(plan.stages))
    policy, prompts = plan.final_policy(), _held_out_prompts(plan.batch_dir)
    metrics: dict[str, Any] = {}
    if policy is not None and prompts:
        scorer = evaluation_reward_model(plan)
        metrics = _compare(policy, plan.parent_path, prompts, scorer[1] if scorer else None, recorder)
        if scorer is not None:
            metrics["reward_model_id"] = scorer[0]
    recorder.on_progress(name, 2, 2, {})
    with session_scope() as db:
        service.finish_evaluation(db, plan.run_id, name, metrics)
    return metrics


def execute_round(run_id: int) -> None:
    """Run a round's remaining stages in order and record everything on the run."""
    from training.callbacks import StopTraining

    plan = _claim(run_id)
    if plan is None:
        return
    current: str | None = None
    with Heartbeat(run_id):
        try:
            metrics: dict[str, Any] = {}
            for index, (name, status) in enumerate(plan.stages):
                current = name
                if status == StageStatus.succeeded.value:
                    continue
                if name == stages.EVALUATE:
                    metrics = _evaluate(plan, index)
                else:
                    _run_training_stage(plan, index, name)
            current = None
            with session_scope() as db:
                service.conclude_run(db, run_id, metrics)
        except StopTraining:
            with session_scope() as db:
                service.mark_cancelled(db, run_id, current)
        except Exception as exc:
            log.exception("round %s failed in %s", run_id, current)
            with session_scope() as db:
                service.fail_run(
                    db, service.get_run(db, run_id, lock=True), f"{type(exc).__name__}: {exc}", current
                )
