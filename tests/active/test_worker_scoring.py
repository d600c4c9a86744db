"""The sampling worker's scoring with a real (tiny) reward model: stored scores, lease order, rescore."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.enums import TaskKind
from app.labeling import service as labeling
from app.labeling.models import Task
from app.rankings.models import Completion
from tests.factories import Factory


def _reward_dir(tmp: Path, name: str) -> Path:
    from training.checkpoints import write_model_dir
    from training.models import reward_model_from_lm
    from training.world.base import ensure_base_model

    base = ensure_base_model(tmp / "models", "micro")
    rm, tok = reward_model_from_lm(base)
    return write_model_dir(tmp / name, lambda d: rm.save_files(d, tok), kind="reward", parent=str(base),
                           run=None, export_batch=None, config={}, metrics={})


@pytest.fixture(scope="module")
def reward_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("active-rm")
    return _reward_dir(tmp, "rm1"), _reward_dir(tmp, "rm2")


def test_worker_scores_tasks_and_leasing_follows(committed_db, reward_dirs, monkeypatch) -> None:
    from app.active.tasks import score_queue_now
    from app.policies import service as registry

    monkeypatch.setattr("app.queueing.enqueue_after_commit", lambda *a, **k: None)  # no broker here
    f = Factory(committed_db)
    q = f.queue(TaskKind.ranking, k=4, task_order="uncertainty")
    tie = f.task(q, f.prompt(q, "Say hi."))
    mixed = f.task(q, f.prompt(q, "Say hi again."))
    texts = {tie.id: ["hello there"] * 4, mixed.id: ["hello", "zzzz qqqq zzzz", "1 2 3 4 5 6 7 8 9", "ok"]}
    for c in committed_db.query(Completion).filter(Completion.task_id.in_(list(texts))):
        c.text = texts[c.task_id][c.position]
    rm1 = registry.register_version(committed_db, name="rm-a", kind="reward", path=reward_dirs[0])
    committed_db.commit()

    assert score_queue_now(q.id) == 2
    committed_db.expire_all()
    scored = {t.id: t for t in committed_db.query(Task).filter_by(queue_id=q.id)}
    assert scored[tie.id].uncertainty == pytest.approx(1.0)  # identical completions: a coin flip
    assert 0.0 <= (scored[mixed.id].uncertainty or 0) < 1.0
    assert {t.scored_by_id for t in scored.values()} == {rm1.id}
    qid = q.id
    committed_db.rollback()  # end the read (no expired object touched after it): SQLite write lock
    assert score_queue_now(qid) == 0  # nothing new for the same reward model

    a = labeling.next_task(committed_db, f.user(), q.id)
    assert a is not None and a.task_id == tie.id
    committed_db.rollback()

    rm2 = registry.register_version(committed_db, name="rm-b", kind="reward", path=reward_dirs[1])
    committed_db.commit()
    assert score_queue_now(qid) == 2  # a new reward model rescores every open task
    committed_db.expire_all()
    assert {t.scored_by_id for t in committed_db.query(Task).filter_by(queue_id=q.id)} == {rm2.id}
