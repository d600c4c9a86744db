"""The demo data gives a new labeler something to do in every queue kind, end to end."""

from __future__ import annotations

import re

from app.demo import SEEDED_RANKING_TASKS, seed_demo
from app.demonstrations.models import Demonstration
from app.labeling.models import Assignment, Task
from app.prompts.models import Prompt, PromptQueue
from app.rankings.models import Ranking
from app.rankings.service import letter
from tests.helpers import WebClient


def test_demo_labeler_can_do_each_kind_of_task(app, db) -> None:
    seed_demo(db)
    web = WebClient(app)
    web.sign_in("alice", "alice-demo-pass")
    home = web.get("/label").text
    queues = {q.kind: q for q in db.query(PromptQueue).filter(PromptQueue.name.like("Demo:%"))}
    assert set(queues) == {"demonstration", "ranking", "write_prompt"}
    for q in queues.values():
        assert q.name in home

    def take(queue_id: int) -> Assignment:
        resp = web.post("/label/next", data={"queue_id": str(queue_id)})
        m = re.match(r"/label/a/(\d+)$", resp.headers.get("location", ""))
        assert m, resp.headers
        assert web.get(m.group(0)).status_code == 200
        a = db.get(Assignment, int(m.group(1)))
        assert a is not None
        return a

    a = take(queues["demonstration"].id)
    assert web.post(f"/label/a/{a.id}/demonstration", data={"text": "42."}).status_code == 303
    a = take(queues["ranking"].id)
    data = {}
    for i, cid in enumerate(letter(j) for j in range(len(a.display_order))):
        data[f"tier_{cid}"], data[f"likert_{cid}"] = str(i + 1), "4"
    assert web.post(f"/label/a/{a.id}/ranking", data=data).status_code == 303
    a = take(queues["write_prompt"].id)
    assert web.post(f"/label/a/{a.id}/prompt", data={"text": "Write a haiku about rain."}).status_code == 303
    assert db.query(Demonstration).count() == 1 and db.query(Ranking).count() == 1
    assert db.query(Prompt).filter_by(source="labeler").one().text == "Write a haiku about rain."


def test_demo_seed_holds_out_enough_prompts_for_the_evaluation(db) -> None:  # type: ignore[no-untyped-def]
    """A round evaluates on the valid/test prompts: the demo must hold out >= 64 of them (it held out 3-5)."""
    from app.runs.executor import EVAL_PROMPTS

    seed_demo(db)
    held = db.query(Prompt).filter(Prompt.split.in_(["valid", "test"]), Prompt.pii_status == "clear").count()
    assert held >= EVAL_PROMPTS == 64
    ranking_tasks = db.query(Task).filter(Task.kind == "ranking").count()
    assert 0 < ranking_tasks <= SEEDED_RANKING_TASKS  # the rest are sampled from the deployed policy
