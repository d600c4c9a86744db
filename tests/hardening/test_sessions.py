"""Sessions: fixation, logout of copied cookies, expiry; no secret in the logs."""

from __future__ import annotations

import logging

from itsdangerous import TimestampSigner

from app.auth.service import create_api_token
from app.config import get_settings
from tests.helpers import WebClient


def _session_cookie(web: WebClient) -> str:
    value = web.cookies.get("rlhf_session")
    assert value
    return str(value)


def test_login_replaces_a_planted_session_and_its_csrf_token(client: WebClient, factory, app) -> None:
    user = factory.user("labeler")
    planted_csrf = client.refresh_csrf("/login")
    planted = _session_cookie(client)
    client.sign_in(user.username, factory.password)
    assert _session_cookie(client) != planted
    assert client.csrf != planted_csrf
    # the attacker's copy of the pre-login cookie is still anonymous
    attacker = WebClient(app)
    attacker.cookies.set("rlhf_session", planted)
    assert attacker.get("/label").status_code == 303  # to the login page


def test_logout_invalidates_copies_of_the_cookie(login, app) -> None:
    web = login("labeler")
    stolen = _session_cookie(web)
    assert web.post("/logout").status_code == 303
    thief = WebClient(app)
    thief.cookies.set("rlhf_session", stolen)
    resp = thief.get("/label")
    assert resp.status_code == 303 and resp.headers["location"].startswith("/login")


def test_expired_session_cookie_is_refused(login, app, monkeypatch) -> None:
    web = login("labeler")
    cookie = _session_cookie(web)
    payload = TimestampSigner(get_settings().secret_key).unsign(cookie.encode())
    old = TimestampSigner(get_settings().secret_key)
    monkeypatch.setattr(old, "get_timestamp", lambda: 1_000_000_000)  # 2001: long past max_age
    expired = old.sign(payload).decode()
    replay = WebClient(app)
    replay.cookies.set("rlhf_session", expired)
    assert replay.get("/label").status_code == 303
    fresh = WebClient(app)
    fresh.cookies.set("rlhf_session", cookie)
    assert fresh.get("/label").status_code == 200


def test_no_secret_in_logs_of_a_login_and_a_token_use(client: WebClient, factory, db, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("sqlalchemy.engine", "app", "uvicorn", "httpx", "fastapi"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        user = factory.user("labeler", password="s3cret-Pa55word!")
        admin = factory.user("admin")
        _, plain = create_api_token(db, "fuzz", ["prompts:write"], admin)
        q = factory.queue("demonstration")
        client.sign_in(user.username, "s3cret-Pa55word!")
        client.post("/login", data={"username": user.username, "password": "wrong-Pa55word!"})
        resp = client.post("/api/prompts", json={"queue": q.id, "prompts": [{"prompt": "Hello there?"}]},
                           headers={"Authorization": f"Bearer {plain}"})
        assert resp.status_code == 201
        client.post("/api/prompts", json={"queue": q.id}, headers={"Authorization": "Bearer rlhf_wrongtoken"})
    finally:
        for name in ("sqlalchemy.engine", "app", "uvicorn", "httpx", "fastapi"):
            logging.getLogger(name).setLevel(logging.NOTSET)
    text = "\n".join(r.getMessage() + repr(r.args) for r in caplog.records)
    assert caplog.records  # something was logged, so the check can fail
    for secret in ("s3cret-Pa55word!", "wrong-Pa55word!", plain, plain[12:], "rlhf_wrongtoken",
                   get_settings().secret_key):
        assert secret not in text
