"""Request bodies are limited before anything parses them: only the import route (signed in) and
the ingestion API (bearer token) take large bodies; an anonymous post to /login never is read."""

from __future__ import annotations

from collections.abc import Iterator

from app.config import get_settings
from app.enums import TaskKind

FORM = {"content-type": "application/x-www-form-urlencoded"}


def _big() -> bytes:
    return b"x" * (get_settings().max_form_bytes + 1024)


def test_anonymous_large_posts_are_refused_unread(client, monkeypatch) -> None:
    import app.auth.routes as auth_routes

    called: list[str] = []
    monkeypatch.setattr(auth_routes.service, "authenticate", lambda *a: called.append("auth"))
    for path in ("/login", "/admin/queues/1/imports", "/label/a/1/demonstration", "/api/prompts"):
        resp = client.post(path, content=_big(), headers=FORM)
        assert resp.status_code == 413 and "larger than" in resp.text, path
    assert called == []


def test_a_body_without_a_declared_length_is_counted(client) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(4):
            yield b"y" * (get_settings().max_form_bytes // 2)

    resp = client.post("/login", content=chunks(), headers=FORM)
    assert resp.status_code == 413


def test_signed_in_users_get_the_small_limit_everywhere_but_the_import_route(login, factory) -> None:
    web = login("admin")
    queue = factory.queue(TaskKind.demonstration)
    assert web.post("/admin/users", content=_big(),
                    headers=FORM).status_code == 413
    lines = b"".join(b'{"prompt": "Large import prompt number %d, padded %s"}\n' % (i, b"p" * 200)
                     for i in range(6000))
    assert len(lines) > get_settings().max_form_bytes
    resp = web.post(f"/admin/queues/{queue.id}/imports", files={"file": ("big.jsonl", lines)})
    assert resp.status_code in (200, 303), resp.text[:300]


def test_small_forms_pass(client) -> None:
    token = client.refresh_csrf("/login")
    resp = client.post("/login", data={"username": "nobody", "password": "x" * 100, "csrf_token": token},
                       csrf=False)
    assert resp.status_code == 401
