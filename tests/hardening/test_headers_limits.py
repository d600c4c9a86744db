"""Security headers on every kind of response; compression and caching; upload and text limits."""

from __future__ import annotations

import io
import re

from fastapi import Depends
from fastapi.testclient import TestClient

from app.auth import access
from app.config import Settings, get_settings
from app.deps import _db_session
from app.main import create_app
from app.web import static_url
from tests.helpers import WebClient

REQUIRED = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
}


def _assert_secure(resp) -> None:  # type: ignore[no-untyped-def]
    for name, value in REQUIRED.items():
        assert resp.headers.get(name) == value, (resp.request.url, name)
    csp = resp.headers.get("content-security-policy", "")
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp, resp.request.url


def _boom_app(db):  # type: ignore[no-untyped-def]
    app = create_app()

    @app.get("/boom", dependencies=[Depends(access.public)])
    def boom() -> None:
        raise RuntimeError("an unexpected bug with a secret inside")

    def _s():  # type: ignore[no-untyped-def]
        yield db

    app.dependency_overrides[_db_session] = _s
    return app


def test_headers_on_pages_errors_api_and_static(client: WebClient, login, db) -> None:
    web = login("labeler")
    responses = [
        client.get("/login"),
        client.get("/label"),  # redirect
        client.get("/no/such/page"),  # 404 page
        client.post("/api/prompts", json={}),  # 401 JSON
        client.get("/api/openapi.json"),
        client.get(static_url("app.css")),
        client.get("/static/no-such-file.css"),
        web.post("/label/a/999999/renew"),  # htmx-style 404 fragment
        web.post("/label/next", csrf=False),  # CSRF refusal
    ]
    unexpected = TestClient(_boom_app(db), raise_server_exceptions=False).get("/boom")
    assert unexpected.status_code == 500 and "secret inside" not in unexpected.text
    assert "Traceback" not in unexpected.text
    for resp in [*responses, unexpected]:
        _assert_secure(resp)


def test_text_is_gzipped_and_fingerprinted_assets_are_cached_for_a_year(client: WebClient) -> None:
    page = client.get("/login", headers={"accept-encoding": "gzip"})
    assert page.headers.get("content-encoding") == "gzip"
    url = static_url("vendor/htmx-2.0.11.min.js")
    assert re.search(r"\?v=[0-9a-f]{12}$", url)
    asset = client.get(url, headers={"accept-encoding": "gzip"})
    assert asset.status_code == 200 and asset.headers.get("content-encoding") == "gzip"
    cache = asset.headers["cache-control"]
    assert "max-age=31536000" in cache and "immutable" in cache
    plain = client.get("/static/vendor/htmx-2.0.11.min.js")
    assert plain.headers["cache-control"] == "no-cache"  # an unversioned URL is revalidated


def test_oversize_upload_is_refused_with_a_clear_message(db, factory) -> None:
    base = get_settings()
    settings = Settings(rlhf_env="test", database_url=base.database_url, data_dir=base.data_dir,
                        secret_key=base.secret_key, max_upload_bytes=1024 * 1024)
    app = create_app(settings)

    def _s():  # type: ignore[no-untyped-def]
        yield db

    app.dependency_overrides[_db_session] = _s
    web = WebClient(app)
    admin = factory.user("admin")
    web.sign_in(admin.username, factory.password)
    q = factory.queue("demonstration")
    big = io.BytesIO(b'{"prompt": "' + b"x" * (3 * 1024 * 1024) + b'"}\n')
    resp = web.post(f"/admin/queues/{q.id}/imports", files={"file": ("big.jsonl", big, "application/jsonl")},
                    data={"mode": "valid_rows"})
    assert resp.status_code == 413
    assert "1 MiB upload limit" in resp.text and "nothing was stored" in resp.text
    _assert_secure(resp)


def test_overlong_texts_are_refused_with_the_limit(login, db, factory) -> None:
    from app.labeling import service

    web = login("labeler")
    q = factory.queue("demonstration")
    factory.task(q)
    a = service.next_task(db, web.user, q.id)
    assert a is not None
    limit = get_settings().max_text_chars
    resp = web.post(f"/label/a/{a.id}/demonstration", data={"text": "y" * (limit + 1)})
    assert resp.status_code == 422 and f"the limit is {limit}" in resp.text
    admin_token = _token(db, factory)
    long_prompt = {"queue": q.id, "prompts": [{"prompt": "z" * (limit + 1)}]}
    api = web.post("/api/prompts", json=long_prompt, headers={"Authorization": f"Bearer {admin_token}"})
    assert api.status_code == 422
    assert "characters" in str(api.json()["report"]).lower() or "long" in str(api.json()["report"]).lower()


def _token(db, factory) -> str:  # type: ignore[no-untyped-def]
    from app.auth.service import create_api_token

    _, plain = create_api_token(db, "t", ["prompts:write"], factory.user("admin"))
    return plain


def test_a_commit_lost_with_the_database_is_a_retryable_503(login, db, monkeypatch) -> None:
    from sqlalchemy.exc import OperationalError

    web = login("labeler")
    real_commit = db.commit

    def lost_commit() -> None:
        db.expire_all()  # what a failed commit's rollback does to the loaded rows
        raise OperationalError("COMMIT", {}, Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr(db, "commit", lost_commit)
    page = web.get("/label")
    api = web.get("/label", headers={"accept": "application/json"})
    monkeypatch.setattr(db, "commit", real_commit)
    assert page.status_code == 503 and page.headers["retry-after"] == "5"
    assert "not reachable" in page.text and "nothing was saved" in page.text and "Traceback" not in page.text
    assert api.status_code == 503 and "try again" in api.json()["detail"]
    _assert_secure(page)


def test_a_commit_lost_after_a_submit_leaves_no_saved_message(login, db, factory, monkeypatch) -> None:
    """The services' submit sets "Demonstration saved." before the commit; a commit that fails
    must not leave that message for the next page."""
    from sqlalchemy.exc import OperationalError

    from app.config import get_settings
    from app.demonstrations.models import Demonstration
    from app.enums import TaskKind
    from app.labeling import service as labeling

    q = factory.queue(TaskKind.demonstration)
    factory.task(q)
    factory.task(q)
    web = login("labeler")
    a = labeling.next_task(db, web.user, q.id)
    assert a is not None
    db.commit()
    real_commit = db.commit

    def lost_commit() -> None:
        db.expire_all()
        raise OperationalError("COMMIT", {}, Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr(get_settings(), "web_hot_path", False)  # the services' path sets it first
    monkeypatch.setattr(db, "commit", lost_commit)
    r = web.post(f"/label/a/{a.id}/demonstration", data={"text": "An answer."})
    monkeypatch.setattr(db, "commit", real_commit)
    assert r.status_code == 503 and "nothing was saved" in r.text
    db.rollback()
    assert db.query(Demonstration).count() == 0
    home = web.get("/label")
    assert home.status_code == 200 and "saved" not in home.text.lower()
