"""Sign-in, sign-out, sessions, CSRF and throttling."""

from __future__ import annotations

from sqlalchemy import func, select

from app.auth.models import LoginAttempt, User
from tests.helpers import WebClient


def test_login_page_renders_form_with_csrf(client: WebClient) -> None:
    resp = client.get("/login")
    assert resp.status_code == 200
    assert 'name="csrf_token"' in resp.text and 'name="password"' in resp.text


def test_anonymous_page_redirects_to_login_with_next(client: WebClient) -> None:
    resp = client.get("/?x=1")
    assert resp.status_code == 303
    assert resp.headers["location"] == "/login?next=/%3Fx%3D1"


def test_login_success_sets_httponly_samesite_cookie_and_rotates_csrf(client: WebClient, factory) -> None:
    user = factory.user("labeler")
    before = client.refresh_csrf("/login")
    resp = client.post(
        "/login",
        data={"username": user.username, "password": factory.password, "csrf_token": before},
        csrf=False,
    )
    assert resp.status_code == 303 and resp.headers["location"] == "/"
    cookie = resp.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie
    after = client.refresh_csrf("/")
    assert after != before
    assert user.username in client.get("/").text


def test_secure_cookie_when_served_over_https(monkeypatch, db, factory) -> None:
    from app.config import Settings
    from app.deps import _db_session
    from app.main import create_app

    app = create_app(Settings(base_url="https://labels.example.org", rlhf_env="test"))

    def _s():  # type: ignore[no-untyped-def]
        yield db

    app.dependency_overrides[_db_session] = _s
    web = WebClient(app)
    user = factory.user("labeler")
    token = web.refresh_csrf("/login")
    resp = web.post(
        "/login",
        data={"username": user.username, "password": factory.password, "csrf_token": token},
        csrf=False,
    )
    assert "secure" in resp.headers["set-cookie"].lower()


def test_wrong_password_is_refused_with_message_and_no_session(client: WebClient, factory) -> None:
    user = factory.user("labeler")
    token = client.refresh_csrf("/login")
    resp = client.post(
        "/login", data={"username": user.username, "password": "nope-nope", "csrf_token": token}, csrf=False
    )
    assert resp.status_code == 401
    assert "Wrong username or password" in resp.text
    assert client.get("/").status_code == 303


def test_login_without_csrf_token_is_refused_and_changes_nothing(client: WebClient, factory, db) -> None:
    user = factory.user("labeler")
    client.get("/login")
    resp = client.post("/login", data={"username": user.username, "password": factory.password}, csrf=False)
    assert resp.status_code == 403
    assert "did not come from this site" in resp.text
    assert db.scalar(select(func.count()).select_from(LoginAttempt)) == 0


def test_state_change_without_csrf_is_refused(login) -> None:
    web = login("labeler")
    resp = web.post("/logout", csrf=False)
    assert resp.status_code == 403
    assert web.get("/").status_code == 200  # still signed in


def test_logout_ends_session(login) -> None:
    web = login("admin")
    assert web.post("/logout").status_code == 303
    assert web.get("/").status_code == 303


def test_throttling_after_repeated_failures(client: WebClient, factory) -> None:
    user = factory.user("labeler")
    token = client.refresh_csrf("/login")
    for _ in range(5):
        client.post(
            "/login",
            data={"username": user.username, "password": "bad-password", "csrf_token": token},
            csrf=False,
        )
    resp = client.post(
        "/login",
        data={"username": user.username, "password": factory.password, "csrf_token": token},
        csrf=False,
    )
    assert resp.status_code == 429
    assert "Too many failed sign-in attempts" in resp.text


def test_deactivated_user_loses_session(login, db) -> None:
    web = login("labeler")
    user = db.get(User, web.user.id)
    user.is_active = False
    db.flush()
    assert web.get("/").status_code == 303


def test_session_epoch_bump_invalidates_old_cookies(login, db) -> None:
    web = login("labeler")
    db.get(User, web.user.id).session_epoch += 1
    db.flush()
    assert web.get("/").status_code == 303


def test_open_redirect_is_prevented(client: WebClient, factory) -> None:
    user = factory.user("labeler")
    token = client.refresh_csrf("/login")
    resp = client.post(
        "/login",
        data={
            "username": user.username,
            "password": factory.password,
            "csrf_token": token,
            "next": "//evil.example/x",
        },
        csrf=False,
    )
    assert resp.headers["location"] == "/"


def test_security_headers_present(client: WebClient) -> None:
    resp = client.get("/login")
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert resp.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in resp.headers["content-security-policy"]
