"""The labeler's pages through HTTP: home, next task, task pages, drafts, skip, submit."""

from __future__ import annotations

from datetime import timedelta

from app.db import utcnow
from app.demonstrations.models import Demonstration
from app.enums import TaskKind
from app.labeling.models import Assignment
from app.rankings.models import Ranking
from app.rankings.service import letter
from tests.helpers import expired_demonstration_lease, take_task


def test_home_lists_queues_with_work_and_the_labelers_numbers(login, factory) -> None:
    q = factory.queue(TaskKind.demonstration, name="Answers please")
    factory.task(q)
    paused = factory.queue(TaskKind.demonstration, name="Paused queue", is_paused=True)
    factory.task(paused)
    web = login("labeler")
    page = web.get("/label").text
    assert "Answers please" in page and "1 available to you" in page
    assert "Paused queue" not in page
    assert "done today" in page and "agreement" in page


def test_paused_labeler_sees_why_and_gets_no_task(login, factory, db) -> None:
    factory.task(factory.queue(TaskKind.demonstration))
    web = login("labeler")
    web.user.is_paused = True
    db.flush()
    assert "Your account is paused" in web.get("/label").text
    assert web.post("/label/next", data={}).status_code == 403


def test_no_task_says_so(login) -> None:
    web = login("labeler")
    resp = web.post("/label/next", data={})
    assert resp.status_code == 303 and resp.headers["location"] == "/label"
    assert "no task for you right now" in web.get("/label").text


def test_prompt_with_html_and_script_renders_inert(login, factory) -> None:
    q = factory.queue(TaskKind.demonstration)
    factory.task(q, factory.prompt(q, text='<script>alert("x")</script><b onmouseover="x()">bold</b>'))
    web = login("labeler")
    page = web.get(f"/label/a/{take_task(web)}").text
    assert '<script>alert("x")</script>' not in page and "<b onmouseover" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page


def test_demonstration_flow_draft_then_submit_then_next(login, factory, db) -> None:
    q = factory.queue(TaskKind.demonstration)
    factory.task(q), factory.task(q)
    web = login("labeler")
    aid = take_task(web, q.id)
    resp = web.post(f"/label/a/{aid}/draft", data={"text": "draft words"})
    assert resp.status_code == 200 and "Draft saved" in resp.text
    assert "draft words" in web.get(f"/label/a/{aid}").text
    resp = web.post(f"/label/a/{aid}/demonstration", data={"text": "final words"})
    assert resp.status_code == 303 and resp.headers["location"].startswith("/label/a/")
    assert db.query(Demonstration).filter_by(assignment_id=aid).one().text == "final words"
    assert "Demonstration saved. Here is the next one." in web.get(resp.headers["location"]).text
    done_page = web.get(f"/label/a/{aid}").text
    assert "You submitted this task" in done_page and "Next task in this queue" in done_page


def test_empty_demonstration_comes_back_with_a_message(login, factory, db) -> None:
    q = factory.queue(TaskKind.demonstration)
    factory.task(q)
    web = login("labeler")
    aid = take_task(web)
    resp = web.post(f"/label/a/{aid}/demonstration", data={"text": "  "})
    assert resp.status_code == 422 and "is empty" in resp.text
    assert db.query(Demonstration).count() == 0


def test_htmx_submit_redirects_with_a_header(login, factory) -> None:
    q = factory.queue(TaskKind.demonstration)
    factory.task(q)
    web = login("labeler")
    aid = take_task(web)
    resp = web.post(f"/label/a/{aid}/demonstration", data={"text": "ok"}, headers={"HX-Request": "true"})
    assert resp.status_code == 200 and resp.headers["HX-Redirect"] == "/label"


def test_skip_needs_reason_and_draft_confirmation_over_http(login, factory, db) -> None:
    q = factory.queue(TaskKind.demonstration)
    factory.task(q)
    web = login("labeler")
    aid = take_task(web)
    assert web.post(f"/label/a/{aid}/skip", data={"reason": ""}).status_code == 422
    web.post(f"/label/a/{aid}/draft", data={"text": "keep me"})
    resp = web.post(f"/label/a/{aid}/skip", data={"reason": "Other"})
    assert resp.status_code == 422 and "Discard my draft" in resp.text
    too_long = {"reason": "Other", "detail": "x" * 1200, "discard_draft": "1"}
    long = web.post(f"/label/a/{aid}/skip", data=too_long)
    assert long.status_code == 422 and "1207 characters; the limit is 1000" in long.text  # refused, not cut
    resp = web.post(f"/label/a/{aid}/skip", data={"reason": "Other", "detail": "tired", "discard_draft": "1"})
    assert resp.status_code == 303
    a = db.get(Assignment, aid)
    assert a is not None and a.status == "skipped" and a.skip_reason == "Other: tired"


def test_ranking_rejection_keeps_what_was_done(login, factory, db) -> None:
    q = factory.queue(TaskKind.ranking, k=4)
    factory.task(q)
    web = login("labeler")
    aid = take_task(web)
    data = {f"tier_{letter(0)}": "2", f"likert_{letter(0)}": "6", f"flags_{letter(0)}": "opinion"}
    resp = web.post(f"/label/a/{aid}/ranking", data=data)
    assert resp.status_code == 422 and "Completion B has no rank" in resp.text
    assert 'value="2" selected' in resp.text and 'value="opinion"\n        checked' in resp.text
    assert db.query(Ranking).count() == 0


def test_ranking_submit_over_http_stores_it(login, factory, db) -> None:
    q = factory.queue(TaskKind.ranking, k=4)
    factory.task(q)
    web = login("labeler")
    aid = take_task(web)
    order = db.get(Assignment, aid).display_order  # type: ignore[union-attr]
    data = {}
    for i in range(len(order)):
        data[f"tier_{letter(i)}"] = str(i + 1)
        data[f"likert_{letter(i)}"] = str(7 - i)
    resp = web.post(f"/label/a/{aid}/ranking", data=data)
    assert resp.status_code == 303
    r = db.query(Ranking).filter_by(assignment_id=aid).one()
    assert {e.completion_id: e.tier for e in r.entries} == {cid: i + 1 for i, cid in enumerate(order)}


def test_lost_lease_page_says_so(login, factory, db) -> None:
    web, aid, _ = expired_demonstration_lease(login, factory, db)
    take_task(login("labeler"))
    resp = web.post(f"/label/a/{aid}/demonstration", data={"text": "late but precious"})
    assert resp.status_code == 409 and "went to another labeler" in resp.text
    assert "late but precious" in resp.text
    assert web.post(f"/label/a/{aid}/renew").status_code == 409


def test_write_prompt_page_and_submit(login, factory, db) -> None:
    from app.labeling.service import create_write_prompt_tasks
    from app.prompts.models import Prompt

    q = factory.queue(TaskKind.write_prompt)
    create_write_prompt_tasks(db, q, ["use_case"])
    web = login("labeler")
    aid = take_task(web)
    assert "A use-case prompt" in web.get(f"/label/a/{aid}").text
    assert web.post(f"/label/a/{aid}/prompt", data={"text": "Summarize this memo."}).status_code == 303
    assert db.query(Prompt).filter_by(author_id=web.user.id).one().text == "Summarize this memo."


def test_admin_without_labeler_role_cannot_label(login) -> None:
    assert login("admin").get("/label").status_code == 403


def test_draft_save_problems_come_back_as_a_fragment(login, factory, db, monkeypatch) -> None:
    from app.config import get_settings

    q = factory.queue(TaskKind.demonstration)
    factory.task(q)
    web = login("labeler")
    aid = take_task(web)
    monkeypatch.setattr(get_settings(), "max_text_chars", 5)
    resp = web.post(f"/label/a/{aid}/draft", data={"text": "too long"}, headers={"HX-Request": "true"})
    assert resp.status_code == 400 and "Draft not saved" in resp.text and "<html" not in resp.text
    assert db.get(Assignment, aid).draft_text == ""  # type: ignore[union-attr]


def test_renew_answers_with_the_new_expiry(login, factory, db) -> None:
    q = factory.queue(TaskKind.demonstration)
    factory.task(q)
    web = login("labeler")
    aid = take_task(web)
    a = db.get(Assignment, aid)
    assert a is not None
    a.lease_expires_at = utcnow() + timedelta(seconds=3)
    db.flush()
    resp = web.post(f"/label/a/{aid}/renew", headers={"HX-Request": "true"})
    assert resp.status_code == 200 and "Reserved for you until" in resp.text
    assert a.lease_expires_at > utcnow() + timedelta(seconds=60)
