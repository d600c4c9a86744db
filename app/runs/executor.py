"""Runs one training round inside a worker: SFT -> RM -> PPO -> evaluation -> deploy gate.

Only ids arrive here; everything is reloaded from the database. The training library is
imported lazily, so the web process never loads torch. Each stage writes its model to a new
directory (temp name, then rename) and registers it in the same transaction that marks the
stage succeeded, so a crash leaves either a finished, registered stage or nothing.
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
from app.db import session_scope, utcnow
from app.enums import ModelKind, RunStatus, StageName, StageStatus
from app.exports.models import ExportBatch
from app.policies import service as registry
from app.runs import service
from app.runs.progress import Heartbeat, RunRecorder

log = logging.getLogger("app.runs")
EVAL_PROMPTS = 64


@dataclass
class Plan:
    """What a round needs, read once at its start."""

    run_id: int
    batch_dir: str
    export_batch_id: int | None
    parent_id: int
    parent_path: str
    config: dict[str, Any]
    gate: dict[str, Any]
    stages: list[tuple[str, str, int | None]]  # (name, status, output version id)
    outputs: dict[str, tuple[int, str]] = field(default_factory=dict)  # stage -> (version id, path)


def _claim(run_id: int) -> Plan | None:
    """Mark the run running (only from queued: a redelivered message does nothing)."""
    with session_scope() as db:
        run = service.get_run(db, run_id, lock=True)
        if run.status != RunStatus.queued.value:
            log.info("round %s is %s; nothing to do", run_id, run.status)
            return None
        batch = db.get(ExportBatch, run.export_batch_id) if run.export_batch_id else None
        parent = registry.get_version(db, run.parent_policy_id) if run.parent_policy_id else None
        if batch is None or parent is None:
            service.fail_run(db, run, "the round's export batch or parent policy is missing", None)
            return None
        now = utcnow()
        run.status, run.heartbeat_at, run.cancel_requested = RunStatus.running.value, now, False
        run.started_at = run.started_at or now
        run.worker = socket.gethostname()
        plan = Plan(
            run.id,
            batch.path,
            batch.id,
            parent.id,
            parent.path,
            dict(run.config),
            dict(run.deploy_gate),
            [(s.name, s.status, s.output_version_id) for s in run.stages],
        )
        for name, status, vid in plan.stages:
            if status == StageStatus.succeeded.value and vid is not None:
                plan.outputs[name] = (vid, registry.get_version(db, vid).path)
        service.add_log(db, run.id, None, f"started on {run.worker}")
        return plan


def _set_stage(run_id: int, name: str, status: StageStatus) -> None:
    with session_scope() as db:
        run = service.get_run(db, run_id)
        run.current_stage = name
        for s in run.stages:
            if s.name == name:
                s.status = status.value
                s.started_at = s.started_at or utcnow()


def _config(cls: Any, values: dict[str, Any]) -> Any:
    known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
    if "betas" in known:
        known["betas"] = tuple(known["betas"])
    return cls(**known)


def _input_policy(plan: Plan) -> str:
    return plan.outputs.get("sft", (0, plan.parent_path))[1]


def _reward_path(plan: Plan) -> str | None:
    if "reward" in plan.outputs:
        return plan.outputs["reward"][1]
    rid = plan.config.get("reward_model_id")
    if rid is None:
        return None
    with session_scope() as db:
        return registry.get_version(db, int(rid)).path


def _train(plan: Plan, name: str, out: Path, recorder: RunRecorder) -> tuple[ModelKind, Path]:
    from training import config as tc
    from training.ppo import run_ppo
    from training.reward import run_reward
    from training.sft import run_sft

    cfg = plan.config.get(name, {})
    if name == StageName.sft.value:
        path = run_sft(
            _config(tc.SFTConfig, cfg),
            plan.batch_dir,
            plan.parent_path,
            out,
            recorder,
            reward_model_dir=_reward_path(plan),
            run=plan.run_id,
        )
        return ModelKind.policy, Path(path)
    if name == StageName.reward.value:
        path = run_reward(
            _config(tc.RewardConfig, cfg), plan.batch_dir, _input_policy(plan), out, recorder, run=plan.run_id
        )
        return ModelKind.reward, Path(path)
    reward = _reward_path(plan)
    if reward is None:
        raise RuntimeError("PPO needs a reward model and none is available")
    path = run_ppo(
        _config(tc.PPOConfig, cfg),
        plan.batch_dir,
        _input_policy(plan),
        reward,
        out,
        recorder,
        run=plan.run_id,
    )
    return ModelKind.policy, Path(path)


def _final_metrics(model_dir: Path) -> dict[str, Any]:
    try:
        metrics = json.loads((model_dir / "manifest.json").read_text()).get("metrics", {})
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in metrics.items() if isinstance(v, int | float | str | bool)}


def _run_training_stage(plan: Plan, index: int, name: str) -> None:
    _set_stage(plan.run_id, name, StageStatus.running)
    recorder = RunRecorder(plan.run_id, name, index, len(plan.stages))
    out = get_settings().models_dir / f"run{plan.run_id}-{name}-{uuid.uuid4().hex[:8]}"
    out.parent.mkdir(parents=True, exist_ok=True)
    kind, path = _train(plan, name, out, recorder)
    recorder.flush()
    parent_id = plan.outputs.get("sft", (plan.parent_id, ""))[0] if name != "sft" else plan.parent_id
    with session_scope() as db:
        version = registry.register_version(
            db,
            name=f"{kind.value}-r{plan.run_id}-{name}",
            kind=kind,
            path=path,
            parent_id=parent_id,
            run_id=plan.run_id,
            export_batch_id=plan.export_batch_id,
        )
        run = service.get_run(db, plan.run_id)
        for s in run.stages:
            if s.name == name:
                s.status, s.progress, s.finished_at = StageStatus.succeeded.value, 1.0, utcnow()
                s.output_version_id, s.metrics = version.id, _final_metrics(path)
        service.add_log(db, run.id, name, f"registered {version.name}")
        plan.outputs[name] = (version.id, version.path)


def _held_out_prompts(batch_dir: str) -> list[str]:
    rows = []
    file = Path(batch_dir) / "prompts.jsonl"
    if file.exists():
        rows = [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
    held = [r["prompt"] for r in rows if r.get("split") in ("valid", "test")]
    return (held or [r["prompt"] for r in rows])[:EVAL_PROMPTS]


def _evaluate(plan: Plan, index: int) -> dict[str, Any]:
    """RM score and KL of the new policy against its parent, and the oracle where it applies."""
    from training.evaluate import evaluate_policy
    from training.world.metrics import win_rate, world_metrics

    name = StageName.evaluate.value
    _set_stage(plan.run_id, name, StageStatus.running)
    recorder = RunRecorder(plan.run_id, name, index, len(plan.stages))
    policy = next((plan.outputs[s][1] for s in ("ppo", "sft") if s in plan.outputs), None)
    prompts = _held_out_prompts(plan.batch_dir)
    metrics: dict[str, Any] = {}
    if policy is not None and prompts:
        reward = _reward_path(plan)
        new = evaluate_policy(
            policy,
            prompts,
            reward_model_dir=reward,
            reference_dir=plan.parent_path,
            extra_metrics=world_metrics,
        )
        recorder.on_progress(name, 1, 2, {})
        old = evaluate_policy(
            plan.parent_path,
            prompts,
            reward_model_dir=reward,
            reference_dir=plan.parent_path,
            extra_metrics=world_metrics,
        )
        metrics = {f"new_{k}": v for k, v in new["metrics"].items() if isinstance(v, int | float)}
        metrics.update({f"parent_{k}": v for k, v in old["metrics"].items() if isinstance(v, int | float)})
        metrics["kl"] = new["metrics"].get("kl_vs_reference", 0.0)
        if "rm_score" in new["metrics"]:
            metrics["rm_gain"] = new["metrics"]["rm_score"] - old["metrics"]["rm_score"]
        if any(k.startswith("new_oracle") for k in metrics):
            oracle = win_rate(prompts, new["completions"], old["completions"])
            metrics.update({f"oracle_{k}": v for k, v in oracle.items()})
    recorder.on_progress(name, 2, 2, {})
    with session_scope() as db:
        run = service.get_run(db, plan.run_id)
        for s in run.stages:
            if s.name == name:
                s.status, s.progress, s.finished_at, s.metrics = (
                    StageStatus.succeeded.value,
                    1.0,
                    utcnow(),
                    metrics,
                )
    return metrics


def gate_decision(gate: dict[str, Any], metrics: dict[str, Any]) -> tuple[bool, list[str]]:
    """Whether a round may deploy itself, and the reasons it may not."""
    reasons = []
    if not gate.get("auto_deploy"):
        reasons.append("automatic deployment is off")
    if "rm_gain" in metrics and metrics["rm_gain"] < gate.get("min_rm_gain", 0.0):
        reasons.append(f"RM gain {metrics['rm_gain']:.3f} < {gate.get('min_rm_gain', 0.0)}")
    if metrics.get("kl", 0.0) > gate.get("max_kl", float("inf")):
        reasons.append(f"KL {metrics['kl']:.2f} > {gate.get('max_kl')}")
    if "oracle_win_rate" in metrics and metrics["oracle_win_rate"] < gate.get("min_oracle_win_rate", 0.0):
        reasons.append(
            f"oracle win-rate {metrics['oracle_win_rate']:.2f} < {gate.get('min_oracle_win_rate')}"
        )
    return not reasons, reasons


def _conclude(plan: Plan, metrics: dict[str, Any]) -> None:
    with session_scope() as db:
        run = service.get_run(db, plan.run_id, lock=True)
        run.current_stage = None
        policy_id = service.final_policy_id(run)
        ok, reasons = gate_decision(plan.gate, metrics)
        if policy_id is None:
            run.status = RunStatus.succeeded.value
        elif ok:
            registry.deploy(db, policy_id, action="auto", run_id=run.id)
            run.status = RunStatus.succeeded.value
            service.add_log(db, run.id, None, "deploy gate passed: deployed")
        else:
            run.status = RunStatus.awaiting_approval.value
            service.add_log(db, run.id, None, "waiting for ops approval: " + "; ".join(reasons))
        run.progress, run.finished_at = 1.0, utcnow()


def execute_round(run_id: int) -> None:
    """Run a round's remaining stages in order and record everything on the run."""
    from training.callbacks import StopTraining

    plan = _claim(run_id)
    if plan is None:
        return
    stage: str | None = None
    with Heartbeat(run_id):
        try:
            metrics: dict[str, Any] = {}
            for index, (name, status, _vid) in enumerate(plan.stages):
                stage = name
                if status == StageStatus.succeeded.value:
                    continue
                if name == StageName.evaluate.value:
                    metrics = _evaluate(plan, index)
                else:
                    _run_training_stage(plan, index, name)
            stage = None
            _conclude(plan, metrics)
        except StopTraining:
            with session_scope() as db:
                run = service.get_run(db, run_id, lock=True)
                run.status, run.finished_at, run.current_stage = RunStatus.cancelled.value, utcnow(), None
                for s in run.stages:
                    if s.status == StageStatus.running.value:
                        s.status = StageStatus.cancelled.value
                service.add_log(db, run_id, stage, "cancelled by ops")
        except Exception as exc:
            log.exception("round %s failed in %s", run_id, stage)
            with session_scope() as db:
                service.fail_run(
                    db, service.get_run(db, run_id, lock=True), f"{type(exc).__name__}: {exc}", stage
                )
