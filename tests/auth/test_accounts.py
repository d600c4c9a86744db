"""Accounts: users change their own password; API tokens expire and die with their creator;
the demo users are never created in production; HSTS over HTTPS, no-store on pages that show a
secret once, Secure cookies unless explicitly disabled."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from app.auth import service
from app.auth.models import ApiToken, User
from app.config import Settings, get_settings
from app.db import utcnow
from app.errors import AppError
from tests.helpers import WebClient


def test_a_user_changes_their_own_password_and_other_sessions_end(login, app, factory, db) -> None:
    web = login("labeler")
    other = WebClient(app)
    other.sign_in(web.user.username, factory.password)
    assert "Change your password" in web.get("/account/password").text
    new = {"new": "n3w-password", "repeat": "n3w-password"}
    bad = web.post("/account/password", data={"current": "wrong", **new})
    assert bad.status_code == 422 and "current password is wrong" in bad.text
    short = web.post("/account/password",
                     data={"current": factory.password, "new": "short", "repeat": "short"})
    assert short.status_code == 422 and "at least 8" in short.text
    ok = web.post("/account/password",
                  data={"current": factory.password, "new": "n3w-password", "repeat": "n3w-password"})
    assert ok.status_code == 200 and 'id="password-changed"' in ok.text
    assert web.get("/").status_code == 200  # this session continues
    assert other.get("/").status_code == 303  # the other one ended
    fresh = WebClient(app)
    fresh.sign_in(web.user.username, "n3w-password")


def _bearer(client: WebClient, plain: str) -> Any:
    return client.post("/api/prompts", json={"queue": "nothing", "prompts": [{"prompt": "x"}]},
                       headers={"Authorization": f"Bearer {plain}"}, csrf=False)


def test_api_tokens_expire_and_die_with_their_creator(client, factory, db) -> None:
    admin = factory.user("admin")
    token, plain = service.create_api_token(db, "ingest", ["prompts:write"], admin)
    assert token.expires_at is not None
    assert timedelta(days=89) < token.expires_at - utcnow() <= timedelta(days=90)
    assert service.token_for(db, plain) is not None
    token.expires_at = utcnow() - timedelta(seconds=1)
    db.commit()  # a refused request rolls back to here, not past the token
    assert service.token_for(db, plain) is None
    assert _bearer(client, plain).status_code == 401
    token.expires_at = utcnow() + timedelta(days=1)
    db.get(User, admin.id).is_active = False  # type: ignore[union-attr]
    db.flush()
    assert service.token_for(db, plain) is None
    assert db.get(ApiToken, token.id).revoked_at is None  # type: ignore[union-attr]


def test_demo_users_are_refused_in_production(db, monkeypatch) -> None:
    from app.demo import seed_demo

    monkeypatch.setattr(get_settings(), "rlhf_env", "production")
    with pytest.raises(AppError, match="RLHF_ENV=production"):
        seed_demo(db)
    assert db.query(User).filter_by(username="admin").count() == 0


def test_pages_that_show_a_secret_once_are_never_stored(login) -> None:
    web = login("admin")
    resp = web.post("/admin/tokens", data={"name": "ci", "scope": ["prompts:write"]})
    assert resp.status_code == 201 and resp.headers["cache-control"] == "no-store"
    resp = web.post("/admin/users", data={"username": "newbie", "role": ["labeler"]})
    assert resp.status_code == 201 and resp.headers["cache-control"] == "no-store"


def _app_with(db: Any, settings: Settings) -> WebClient:
    from app.deps import _db_session
    from app.main import create_app

    app = create_app(settings)

    def _s() -> Any:
        yield db

    app.dependency_overrides[_db_session] = _s
    return WebClient(app)


def test_hsts_over_https_only(db) -> None:
    https = _app_with(db, Settings(base_url="https://labels.example.org", rlhf_env="test"))
    assert "max-age=31536000" in https.get("/login").headers["strict-transport-security"]
    http = _app_with(db, Settings(base_url="http://127.0.0.1:8000", rlhf_env="test"))
    assert "strict-transport-security" not in http.get("/login").headers


def test_cookies_are_secure_by_default_in_production_unless_disabled() -> None:
    secret = "s" * 40
    assert Settings(rlhf_env="production", secret_key=secret, base_url="http://x:8000").secure_cookies
    assert not Settings(rlhf_env="production", secret_key=secret, cookie_secure=False).secure_cookies
    assert not Settings(rlhf_env="development", base_url="http://127.0.0.1:8000").secure_cookies
    assert Settings(rlhf_env="development", base_url="https://labels.example.org").secure_cookies


def test_the_compose_file_defaults_to_secure_cookies() -> None:
    from pathlib import Path

    compose = (Path(__file__).resolve().parents[2] / "docker-compose.yml").read_text()
    assert "COOKIE_SECURE: ${COOKIE_SECURE:-true}" in compose and "BASE_URL: ${BASE_URL:-https://" in compose
