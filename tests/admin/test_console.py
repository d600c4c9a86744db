"""The admin console over HTTP: queues, uploads, PII review, users, tokens and the ingestion API."""

from __future__ import annotations

import io
import re

from sqlalchemy import func, select

from app.auth.models import ApiToken, User
from app.enums import AssignmentStatus, PIIStatus, TaskKind
from app.labeling.models import Task
from app.prompts.models import GuidelineVersion, PIIRedaction, Prompt, PromptImport, PromptQueue
from tests.admin.builders import assignment


def test_create_edit_version_and_pause_a_queue(login, db) -> None:
    web = login("admin")
    resp = web.post(
        "/admin/queues",
        data={
            "name": "Rank v1",
            "kind": "ranking",
            "k": "7",
            "overlap": "3",
            "priority": "5",
            "gold_rate": "0.1",
            "guidelines": "# Rules\n<b>x</b>",
        },
    )
    assert resp.status_code == 303
    queue = db.scalar(select(PromptQueue).where(PromptQueue.name == "Rank v1"))
    assert queue is not None and (queue.k, queue.overlap, queue.priority, queue.gold_rate) == (7, 3, 5, 0.1)
    page = web.get(resp.headers["location"])
    assert page.status_code == 200 and "<h1>Rules</h1>" in page.text and "&lt;b&gt;x&lt;/b&gt;" in page.text
    # Same guidelines: no new version; changed guidelines: version 2, version 1 kept.
    form = {"name": "Rank v1", "kind": "ranking", "k": "9", "overlap": "3", "guidelines": "# Rules\n<b>x</b>"}
    assert web.post(f"/admin/queues/{queue.id}", data=form).status_code == 303
    assert web.post(f"/admin/queues/{queue.id}", data={**form, "guidelines": "New rules"}).status_code == 303
    versions = db.scalars(select(GuidelineVersion.version).where(GuidelineVersion.queue_id == queue.id)).all()
    assert sorted(versions) == [1, 2] and queue.k == 9
    assert "Rules" in web.get(f"/admin/queues/{queue.id}/guidelines/1").text
    assert web.post(f"/admin/queues/{queue.id}/pause").status_code == 303 and queue.is_paused
    assert web.post(f"/admin/queues/{queue.id}/resume").status_code == 303 and not queue.is_paused


def test_bad_queue_input_is_refused_and_changes_nothing(login, db) -> None:
    web = login("admin")
    before = db.scalar(select(func.count()).select_from(PromptQueue))
    for bad in (
        {"name": "x", "kind": "ranking", "k": "3"},
        {"name": "x", "kind": "ranking", "k": "10"},
        {"name": "", "kind": "ranking"},
        {"name": "x", "kind": "nope"},
        {"name": "x", "kind": "ranking", "gold_rate": "1.5"},
    ):
        resp = web.post("/admin/queues", data=bad)
        assert resp.status_code == 400, bad
    data = {"name": "keep me", "kind": "ranking", "k": "3", "guidelines": "Long text"}
    page = web.post("/admin/queues", data=data)
    assert "k: Input should be greater than or equal to 4" in page.text
    # What was typed survives on the re-shown form.
    assert 'value="keep me"' in page.text and ">Long text</textarea>" in page.text
    assert db.scalar(select(func.count()).select_from(PromptQueue)) == before


def test_queue_page_shows_progress_and_who_is_working(login, db, factory) -> None:
    web = login("admin")
    queue = factory.queue(TaskKind.demonstration, overlap=1)
    worker = factory.user("labeler", username="worker_bee")
    t1, _t2, t3 = (factory.task(queue) for _ in range(3))
    assignment(db, t1, worker, status=AssignmentStatus.leased.value)
    t3.status, t3.done_count = "done", 1
    db.flush()
    page = web.get(f"/admin/queues/{queue.id}/progress")
    assert 'data-stat="waiting">1<' in page.text and 'data-stat="in_progress">1<' in page.text
    assert 'data-stat="done">1<' in page.text and "worker_bee" in page.text


def test_upload_import_reports_bad_rows_by_line(login, db, factory) -> None:
    web = login("admin")
    queue = factory.queue(TaskKind.demonstration)
    body = b'{"prompt": "fine"}\n{"prompt": 5}\nnot json\n'
    resp = web.post(
        f"/admin/queues/{queue.id}/imports",
        data={"mode": "valid_rows"},
        files={"file": ("p.jsonl", io.BytesIO(body), "application/x-ndjson")},
    )
    assert resp.status_code == 303
    report = web.get(resp.headers["location"]).text
    assert (
        "Imported 1 prompt" in report and "<td>2</td><td>rejected</td>" in report and "<td>3</td>" in report
    )
    resp = web.post(
        f"/admin/queues/{queue.id}/imports",
        data={"mode": "all_or_nothing"},
        files={"file": ("p.jsonl", io.BytesIO(b'{"prompt": "other"}\nbad\n'), "text/plain")},
    )
    assert "Nothing was imported" in web.get(resp.headers["location"]).text
    assert db.scalars(select(Prompt.text).where(Prompt.queue_id == queue.id)).all() == ["fine"]


def test_pii_review_redact_clear_reject(login, db, factory) -> None:
    web = login("admin")
    queue = factory.queue(TaskKind.demonstration)
    from app.prompts.review import screen_prompt

    prompts = []
    for text in ("Hi Sam, mail sam@example.com today", "Call 415-555-0132 now", "My IP is 10.1.2.3"):
        p = screen_prompt(Prompt(queue_id=queue.id, text=text))
        db.add(p)
        prompts.append(p)
    db.flush()
    assert all(p.pii_status == PIIStatus.held.value for p in prompts)
    listing = web.get("/admin/pii").text
    assert all(f"/admin/pii/{p.id}" in listing for p in prompts)
    review = web.get(f"/admin/pii/{prompts[0].id}").text
    assert '<mark class="pii" title="email">sam@example.com' in review
    # Redact only the email (finding 1), plus an extra string.
    # First the exact text to be released is shown; nothing is released until it is confirmed.
    chosen = {"finding": ["1"], "extra": "today"}
    preview = web.post(f"/admin/pii/{prompts[0].id}/redact", data=chosen)
    assert preview.status_code == 200 and "Hi Sam, mail [EMAIL] [REDACTED]</pre>" in preview.text
    assert prompts[0].pii_status == "held" and prompts[0].text == "Hi Sam, mail sam@example.com today"
    digest = re.search(r'name="confirm" value="([0-9a-f]{64})"', preview.text)
    assert digest
    other = {**chosen, "extra": "", "confirm": digest.group(1)}
    stale = web.post(f"/admin/pii/{prompts[0].id}/redact", data=other)
    assert stale.status_code == 409 and prompts[0].pii_status == "held"  # not what was previewed
    resp = web.post(f"/admin/pii/{prompts[0].id}/redact", data={**chosen, "confirm": digest.group(1)})
    assert resp.status_code == 303
    assert prompts[0].text == "Hi Sam, mail [EMAIL] [REDACTED]" and prompts[0].pii_status == "redacted"
    assert web.post(f"/admin/pii/{prompts[1].id}/clear", data={"note": "a shop's number"}).status_code == 303
    assert web.post(f"/admin/pii/{prompts[2].id}/reject").status_code == 303
    assert prompts[2].text == "[REJECTED]" and prompts[2].pii_status == "rejected"
    actions = db.execute(select(PIIRedaction.prompt_id, PIIRedaction.action).order_by(PIIRedaction.id)).all()
    assert [a for _, a in actions] == ["redact", "clear", "reject"]
    # Released prompts got demonstration tasks; the rejected one did not.
    task_prompts = set(db.scalars(select(Task.prompt_id).where(Task.queue_id == queue.id)))
    assert task_prompts == {prompts[0].id, prompts[1].id}
    # A decided prompt cannot be decided twice.
    assert web.post(f"/admin/pii/{prompts[0].id}/reject").status_code == 409


def test_users_invite_roles_and_deactivation_releases_leases(login, db, factory, app) -> None:
    from tests.helpers import WebClient

    web = login("admin")
    resp = web.post("/admin/users", data={"username": "newbie", "role": ["labeler", "ops"]})
    assert resp.status_code == 201 and 'id="temp-password"' in resp.text
    newbie = db.scalar(select(User).where(User.username == "newbie"))
    assert newbie is not None and {r.value for r in newbie.roles} == {"labeler", "ops"}
    assert web.post(f"/admin/users/{newbie.id}/roles", data={"role": ["labeler"]}).status_code == 303
    assert {r.value for r in newbie.roles} == {"labeler"}

    labeler = factory.user("labeler")
    lab_web = WebClient(app)
    lab_web.sign_in(labeler.username, factory.password)
    queue = factory.queue(TaskKind.demonstration)
    open_lease = assignment(db, factory.task(queue), labeler, status=AssignmentStatus.leased.value)
    done = assignment(db, factory.task(queue), labeler)
    epoch = labeler.session_epoch
    assert web.post(f"/admin/users/{labeler.id}/deactivate").status_code == 303
    db.refresh(open_lease)
    db.refresh(done)
    assert open_lease.status == "released" and done.status == "submitted"
    assert not labeler.is_active and labeler.session_epoch == epoch + 1
    assert lab_web.get("/").status_code == 303  # their session ended
    # An admin cannot lock themselves out.
    assert web.post(f"/admin/users/{web.user.id}/deactivate").status_code == 409
    assert web.post(f"/admin/users/{web.user.id}/roles", data={"role": ["labeler"]}).status_code == 409


def test_api_tokens_create_use_scope_and_revoke(login, db, factory, client) -> None:
    web = login("admin")
    queue = factory.queue(TaskKind.ranking, name="api-queue")
    resp = web.post("/admin/tokens", data={"name": "product", "scope": ["prompts:write"]})
    assert resp.status_code == 201
    import re

    plain = re.search(r'id="token-secret">([^<]+)<', resp.text).group(1)  # type: ignore[union-attr]
    token = db.scalar(select(ApiToken).where(ApiToken.name == "product"))
    assert token is not None and plain not in token.token_hash and token.token_hash != plain
    auth = {"Authorization": f"Bearer {plain}"}
    body = {
        "queue": "api-queue",
        "prompts": [
            {"prompt": "From the product", "user_id": "cust-1"},
            {"prompt": ""},
            {"prompt": "Mail me at a@b.co"},
        ],
    }
    r = client.post("/api/prompts", json=body, headers=auth)
    assert r.status_code == 201, r.text
    out = r.json()
    assert (out["accepted"], out["rejected"], out["held_for_pii"]) == (2, 1, 1)
    assert out["report"] == [{"line": 2, "kind": "rejected", "reason": "'prompt' is empty"}]
    sources = set(db.scalars(select(Prompt.source).where(Prompt.queue_id == queue.id)))
    assert sources == {"api"}
    # All or nothing: 422 and nothing stored.
    r = client.post(
        "/api/prompts",
        json={**body, "mode": "all_or_nothing", "prompts": [{"prompt": "x1"}, {}]},
        headers=auth,
    )
    assert r.status_code == 422 and r.json()["accepted"] == 0
    assert (
        client.post(
            "/api/prompts", json={"queue": "nope", "prompts": [{"prompt": "x"}]}, headers=auth
        ).status_code
        == 404
    )
    assert client.post("/api/prompts", json=[1, 2], headers=auth).status_code in (400, 422)
    # Wrong scope, no token, revoked token.
    from app.auth.service import create_api_token

    _, other = create_api_token(db, "reader", ["runs:read"], None)
    assert (
        client.post("/api/prompts", json=body, headers={"Authorization": f"Bearer {other}"}).status_code
        == 403
    )
    assert client.post("/api/prompts", json=body).status_code == 401
    assert web.post(f"/admin/tokens/{token.id}/revoke").status_code == 303
    assert client.post("/api/prompts", json=body, headers=auth).status_code == 401
    imports = db.scalars(select(PromptImport).where(PromptImport.api_token_id == token.id)).all()
    assert len(imports) == 2


def test_console_pages_render_for_admins(login, factory) -> None:
    web = login("admin")
    factory.queue(TaskKind.ranking)
    for path in (
        "/admin",
        "/admin/queues",
        "/admin/queues/new",
        "/admin/imports",
        "/admin/pii",
        "/admin/quality",
        "/admin/review",
        "/admin/users",
        "/admin/tokens",
        "/exports",
    ):
        resp = web.get(path)
        assert resp.status_code == 200, path
    home = web.get("/").text
    assert 'href="/admin"' in home and 'href="/exports"' in home
    ops = login("ops")
    assert ops.get("/exports").status_code == 200 and ops.get("/admin").status_code == 403
    assert 'href="/admin"' not in ops.get("/").text


def test_export_from_the_console_is_queued_as_a_job(login, db, factory) -> None:
    """The batch itself is written by a worker: tests/exports/test_jobs.py follows it to the files."""
    web = login("ops")
    queue = factory.queue(TaskKind.demonstration)
    factory.prompt(queue, text="Export me")
    resp = web.post("/exports", data={"queues": [str(queue.id)], "splits": ["train", "valid", "test"]})
    assert resp.status_code == 303 and resp.headers["location"].startswith("/exports/jobs/")
    page = web.get(resp.headers["location"])
    assert page.status_code == 200 and 'id="export-job-progress"' in page.text
    assert "Export job" in web.get("/exports").text
    assert web.post("/exports", data={"exclude_flags": ["bogus"]}).status_code == 400


def test_ingestion_api_refuses_odd_bodies_with_4xx(db, factory, client) -> None:
    from app.auth.service import create_api_token

    factory.queue(TaskKind.ranking, name="odd-queue")
    _, plain = create_api_token(db, "fuzz", ["prompts:write"], None)
    db.commit()  # a refused request rolls back to here, not past the token
    auth = {"Authorization": f"Bearer {plain}"}
    bodies = [
        {"queue": 10**30, "prompts": [{"prompt": "x"}]},
        {"queue": "a\u0000b", "prompts": [{"prompt": "x"}]},
        {"queue": True, "prompts": [{"prompt": "x"}]},
        {"queue": "odd-queue", "prompts": "nope"},
        {"queue": "odd-queue", "prompts": []},
        {"queue": "odd-queue", "prompts": [{"prompt": "x"}], "mode": 3},
        {"queue": "odd-queue", "prompts": [{"prompt": "x\u0000y"}, {"prompt": ["a"]}, 7, None]},
    ]
    for body in bodies:
        resp = client.post("/api/prompts", json=body, headers=auth)
        assert 400 <= resp.status_code < 500, (body, resp.status_code, resp.text)
        assert resp.json().get("detail") or resp.json()["report"]
    assert (
        client.post(
            "/api/prompts", content=b"{not json", headers={**auth, "content-type": "application/json"}
        ).status_code
        == 422
    )
