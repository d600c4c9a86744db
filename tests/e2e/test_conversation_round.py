"""Conversations through a training round: imported as "messages" rows, their next turns sampled by
the deployed micro policy through its chat template, labelled, exported and trained on by an
InstructGPT round (SFT, RM, PPO) and a DPO round (SFT, DPO), each run by the round executor."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.config import get_settings
from app.db import session_scope, utcnow
from app.demonstrations.models import Demonstration
from app.enums import TaskKind
from app.exports.models import ExportBatch
from app.labeling.models import Assignment, Task
from app.policies import service as registry
from app.prompts.importer import Importer, RawRow
from app.prompts.models import Prompt, PromptQueue
from app.rankings.models import Completion, Ranking, RankingEntry
from app.runs import service as rounds
from app.runs.models import TrainingRun
from app.runs.schemas import DeployGate, RoundRequest
from app.sampling import service as sampling
from tests.e2e.test_loop import TINY_SETTINGS
from tests.factories import Factory

# Building the micro base model (once per test session) alone can pass the default 600 s on a busy machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

# The quick preset's floors of steps are left out: the round only has to train on the rows.
SETTINGS = {k: v if k == "ppo" else {**v, "min_steps": 0} for k, v in TINY_SETTINGS.items()}
DPO_SETTINGS = {"dpo": {"epochs": 1, "batch_size": 4, "lr": 1e-4, "max_length": 64, "min_steps": 0}}
OPEN = DeployGate(auto_deploy=False, min_rm_gain=-1e9, max_kl=1e9, min_oracle_win_rate=0.0)


def _conversation(text: str, i: int) -> list[dict[str, str]]:
    """A world prompt as the last user turn of a short chat (so the world's oracle can judge replies)."""
    return [
        {"role": "system", "content": "Answer the last question."},
        {"role": "user", "content": f"Hello, I have questions (chat {i})."},
        {"role": "assistant", "content": "Sure, ask away."},
        {"role": "user", "content": text},
    ]


def _setup(db: Any, base: Path) -> dict[str, int]:
    from training.world import make_prompts

    f = Factory(db)
    user = f.user("labeler", username="conv_lena")
    demos = f.queue(TaskKind.demonstration, name="conv demos")
    ranks = f.queue(TaskKind.ranking, name="conv ranks", k=4, low_water=8, sampling={"max_new_tokens": 8})
    prompts = make_prompts(32, seed=11)
    for queue, part in ((demos, prompts[0::2]), (ranks, prompts[1::2])):
        rows = (RawRow(i, data={"messages": _conversation(p.text, i), "user_id": f"c{i % 8}"})
                for i, p in enumerate(part, 1))
        imp = Importer(db, get_settings(), queue, "valid_rows", source="world").run(rows)
        assert imp.accepted == 16, imp.report
    base_version = registry.register_version(db, name="conv-base", kind="policy", path=base)
    registry.deploy(db, base_version.id)
    db.commit()
    return {"demos": demos.id, "ranks": ranks.id, "user": user.id}


def _sample_ranking_tasks(ids: dict[str, int]) -> int:
    """What the sampling worker does for a queue under its low-water mark (run here, in-process)."""
    from app.sampling.tasks import sample_for

    with session_scope() as db:
        job = sampling.plan_restock(db, db.get(PromptQueue, ids["ranks"]))
    assert job is not None and all(isinstance(p, list) and p[-1]["role"] == "user" for p in job.prompt_texts)
    samples = sample_for(job)
    with session_scope() as db:
        return sampling.store_samples(db, job, samples)


def _label(ids: dict[str, int]) -> None:
    """Demonstrations and rankings by a simulated labeler, answering the conversation's last turn."""
    from training.world import SimulatedLabeler, candidate_completions, parse_prompt

    lab, rng = SimulatedLabeler(seed=2), random.Random(2)
    with session_scope() as db:
        for task in db.scalars(select(Task).where(Task.queue_id == ids["demos"])).all():
            prompt = db.get(Prompt, task.prompt_id)
            assert prompt is not None and prompt.messages
            a = _assignment(db, task, ids["user"])
            db.add(Demonstration(assignment_id=a.id, task_id=task.id, prompt_id=prompt.id,
                                 user_id=ids["user"], text=lab.demonstrate(prompt.messages[-1]["content"])))
        for task in db.scalars(select(Task).where(Task.queue_id == ids["ranks"])).all():
            prompt = db.get(Prompt, task.prompt_id)
            assert prompt is not None and prompt.messages
            wp = parse_prompt(prompt.messages[-1]["content"])
            comps = list(db.scalars(select(Completion).where(Completion.task_id == task.id)
                                    .order_by(Completion.position)))
            # The policy's samples plus the world's candidates, so every ranking has clear winners.
            for c, text in zip(comps[2:], candidate_completions(wp, 2, rng), strict=False):
                c.text = text
            a = _assignment(db, task, ids["user"])
            r = Ranking(assignment_id=a.id, task_id=task.id, user_id=ids["user"])
            r.entries = [RankingEntry(completion_id=c.id, tier=t)
                         for c, t in zip(comps, lab.rank(wp, [c.text for c in comps]), strict=True)]
            db.add(r)


def _assignment(db: Any, task: Task, user_id: int) -> Assignment:
    a = Assignment(task_id=task.id, user_id=user_id, status="submitted", lease_expires_at=utcnow())
    db.add(a)
    db.flush()
    task.done_count, task.status = 1, "done"
    return a


def _round(req: RoundRequest) -> tuple[Any, Path]:
    from app.runs.executor import execute_round

    with session_scope() as db:
        run_id = rounds.start_round(db, req, by=None).id
    execute_round(run_id)
    with session_scope() as db:
        run = rounds.get_run(db, run_id)
        stages = [(s.name, s.status) for s in run.stages]
        batch = db.get(ExportBatch, run.export_batch_id)
        assert batch is not None
        return (run.status, run.error_stage, run.error, stages), Path(batch.path)


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_conversations_go_through_sampling_export_and_every_round_method(  # type: ignore[no-untyped-def]
    committed_db, micro_base, monkeypatch
) -> None:
    monkeypatch.setattr("app.runs.service.enqueue", lambda *a, **k: None)  # the executor runs here
    ids = _setup(committed_db, micro_base)
    assert _sample_ranking_tasks(ids) == 8
    _label(ids)

    queues = [ids["demos"], ids["ranks"]]
    (status, stage, error, stages), root = _round(
        RoundRequest(queue_ids=queues, stages=["sft", "reward", "ppo"], settings=SETTINGS, gate=OPEN)
    )
    assert status in ("succeeded", "awaiting_approval"), (stage, error, stages)
    assert all(s == "succeeded" for _, s in stages), stages
    sft, ranked = _rows(root / "sft.jsonl"), _rows(root / "rankings.jsonl")
    prompts = _rows(root / "prompts.jsonl")
    assert len(sft) == 16 and all(r["messages"][-1]["role"] == "assistant" and "prompt" not in r for r in sft)
    assert len(ranked) == 8 and all(r["messages"][-1]["role"] == "user" for r in ranked)
    assert len(prompts) == 32 and all(len(r["messages"]) == 4 for r in prompts)

    settings = {"sft": SETTINGS["sft"], **DPO_SETTINGS}
    (status, stage, error, stages), _ = _round(
        RoundRequest(method="dpo", queue_ids=queues, settings=settings, gate=OPEN)
    )
    assert status in ("succeeded", "awaiting_approval"), (stage, error, stages)
    assert all(s == "succeeded" for _, s in stages), stages

    # SFT -> DPO -> its implicit reward -> PPO, which starts from SFT (the reward's reference)
    settings = {"sft": SETTINGS["sft"], **DPO_SETTINGS, "ppo": SETTINGS["ppo"]}
    (status, stage, error, stages), _ = _round(
        RoundRequest(method="dpo_ppo", queue_ids=queues, settings=settings, gate=OPEN)
    )
    assert status in ("succeeded", "awaiting_approval"), (stage, error, stages)
    assert stages == [(n, "succeeded") for n in ("sft", "dpo", "implicit_reward", "ppo", "evaluate")]
    with session_scope() as db:
        run = db.scalars(select(TrainingRun).order_by(TrainingRun.id.desc())).first()
        assert run is not None
        out = {s.name: registry.get_version(db, v) for s in run.stages if (v := s.output_version_id)}
        assert out["implicit_reward"].kind == "reward" and out["implicit_reward"].parent_id == out["dpo"].id
        assert out["ppo"].parent_id == out["sft"].id  # not the DPO policy
        ppo_manifest = json.loads((Path(out["ppo"].path) / "manifest.json").read_text())
        assert ppo_manifest["config"]["reward_model"] == out["implicit_reward"].path
        evaluation = next(s for s in run.stages if s.name == "evaluate")
        assert ppo_manifest["method"] == "dpo_ppo" and "rm_gain" in evaluation.metrics  # scored by an RM:
        assert evaluation.metrics["reward_model_id"] == out["implicit_reward"].id  # the round's implicit one
