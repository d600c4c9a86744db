"""Script and HTML planted through every input path that shows user text stay inert in Chromium.

The browser context bypasses the CSP on purpose: the pages must be safe by escaping alone
(the CSP is the second wall, tested by the header tests)."""

from __future__ import annotations

import io
import json
import re

import httpx
import pytest
from sqlalchemy import select

from app.auth.service import create_api_token, create_user
from app.demonstrations.models import Demonstration
from app.labeling import service as labeling
from app.prompts.models import PromptQueue
from app.rankings.models import Completion, Ranking
from tests.hardening.services import CSRF, Labeler

P = ('<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'
     '<b data-pwned>b</b><svg onload="alert(3)"></svg><iframe srcdoc="<script>parent.__pwned=5</script>">'
     '</iframe>')
MD = P + "\n\n[click me](javascript:window.__pwned=4) <a href=\"javascript:alert(6)\">raw</a>"
PASSWORD = "inject-pass-123"


def _admin_client(url: str) -> tuple[httpx.Client, str]:
    http = httpx.Client(base_url=url, follow_redirects=False, timeout=30)
    token = CSRF.search(http.get("/login").text).group(1)  # type: ignore[union-attr]
    assert http.post("/login", data={"username": "root", "password": PASSWORD, "csrf_token": token}
                     ).status_code == 303
    return http, CSRF.search(http.get("/admin").text).group(1)  # type: ignore[union-attr]


def _plant(url: str, db) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Every input path: admin forms, import file, ingestion API, labeler forms, sampled completions."""
    admin = create_user(db, "root", PASSWORD, ["admin"])
    _, token = create_api_token(db, "inject", ["prompts:write"], admin)
    db.commit()
    http, csrf = _admin_client(url)
    h = {"X-CSRF-Token": csrf}
    r = http.post("/admin/users", headers=h, data={"username": "mallory", "role": "labeler",
                                                   "display_name": P, "password": PASSWORD})
    assert r.status_code == 201, r.text[:300]
    ids: dict[str, int] = {}
    for kind in ("demonstration", "ranking"):
        r = http.post("/admin/queues", headers=h, data={"name": f"{kind} {P}"[:120], "kind": kind, "k": "4",
                                                        "overlap": "1", "guidelines": MD})
        assert r.status_code == 303, r.text[:300]
        ids[kind] = int(r.headers["location"].rsplit("/", 1)[1])
    demo_q = ids["demonstration"]
    jsonl = "\n".join(json.dumps({"prompt": f"import {i}: {P}"}) for i in range(2)).encode()
    r = http.post(f"/admin/queues/{demo_q}/imports", headers=h, data={"mode": "valid_rows"},
                  files={"file": ("evil.jsonl", io.BytesIO(jsonl), "application/jsonl")})
    assert r.status_code == 303, r.text[:300]
    ids["import"] = int(r.headers["location"].rsplit("/", 1)[1])
    r = http.post("/api/prompts", json={"queue": demo_q, "prompts": [{"prompt": f"api: {P}"}]},
                  headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 201, r.text[:300]
    # a ranking task whose prompt and completions carry the payload (as a sampling worker writes them)
    from tests.factories import Factory

    queue = db.get(PromptQueue, ids["ranking"])
    prompt = Factory(db).prompt(queue, text=f"ranking prompt {P}")
    for _ in range(2):
        completions = [Completion(text=f"completion {i} {P}") for i in range(4)]
        labeling.add_ranking_task(db, queue, prompt, completions)
    db.commit()
    # the labeler writes a demonstration and comments through the forms
    lab = Labeler(url, "mallory", PASSWORD)
    lab.sign_in()
    a = lab.take(demo_q)
    assert a is not None
    assert lab.post(f"/label/a/{a}/demonstration", {"text": f"demo {P}"}).status_code == 303
    a = lab.take(ids["ranking"])
    assert a is not None
    form = lab.ranking_form(a)
    for key in list(form):
        if key.startswith("tier_"):
            form["comment_" + key[5:]] = f"entry comment {P}"
    form["comment"] = f"ranking comment {P}"
    assert lab.submit(a, form).status_code == 303
    db.expire_all()
    ids["ranking_row"] = db.scalar(select(Ranking.id))
    db.rollback()  # end the read: on SQLite every transaction holds the write lock the server needs
    next_demo = lab.take(demo_q)  # an open demonstration task page (prompt from the import or the API)
    assert next_demo is not None
    ids["demo_task"] = next_demo
    next_ranking = lab.take(ids["ranking"])
    assert next_ranking is not None
    ids["ranking_task"] = next_ranking
    ids["demo_row"] = db.scalar(select(Demonstration.id))
    db.rollback()  # the same: the pages below are requests that take the lock
    return ids


def _visit(page, url: str, path: str, seen: list[str]) -> None:  # type: ignore[no-untyped-def]
    resp = page.goto(url + path)
    assert resp is not None and resp.status < 400, (path, resp and resp.status)
    page.wait_for_load_state("load")
    page.wait_for_timeout(100)
    assert page.evaluate("window.__pwned") is None, path
    assert page.locator("[data-pwned]").count() == 0, path
    assert page.locator("a[href^='javascript:' i]").count() == 0, path
    assert page.locator("iframe[srcdoc]").count() == 0, path
    if "data-pwned" in page.inner_text("body"):
        seen.append(path)  # the payload is on the page, as text


def _sign_in(page, url: str, username: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(url + "/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/$|.*/label.*"))


@pytest.mark.browser
def test_planted_script_and_html_stay_inert_everywhere(live_server, committed_db, browser) -> None:
    url = live_server.url
    ids = _plant(url, committed_db)
    ids_paths = [f"/label/a/{ids['demo_task']}", f"/label/a/{ids['ranking_task']}"]
    context = browser.new_context(bypass_csp=True)
    dialogs: list[str] = []
    try:
        page = context.new_page()
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        seen: list[str] = []
        _sign_in(page, url, "root")
        admin_pages = [
            "/admin", "/admin/users", "/admin/queues", f"/admin/queues/{ids['demonstration']}",
            f"/admin/queues/{ids['demonstration']}/edit",
            f"/admin/queues/{ids['demonstration']}/guidelines/1",
            f"/admin/queues/{ids['ranking']}", "/admin/imports", f"/admin/imports/{ids['import']}",
            "/admin/pii", "/admin/quality", "/admin/review", f"/admin/review/rankings/{ids['ranking_row']}",
            f"/admin/review/demonstrations/{ids['demo_row']}",
        ]
        for path in admin_pages:
            _visit(page, url, path, seen)
        context.clear_cookies()
        _sign_in(page, url, "mallory")
        _visit(page, url, "/label", seen)
        for path in ids_paths:
            _visit(page, url, path, seen)
        assert not dialogs, dialogs
        # the payloads were shown (as text) on the pages that display them
        for must in ("/admin/users", f"/admin/review/rankings/{ids['ranking_row']}",
                     f"/admin/review/demonstrations/{ids['demo_row']}", f"/admin/imports/{ids['import']}"):
            assert must in seen, (must, seen)
        assert any(p.startswith("/label/a/") for p in seen), seen
    finally:
        context.close()
