"""Sign-in throttling is per (username, client): an attacker cannot lock an admin out, forwarded
addresses count only from trusted proxies, and a username under attack from many clients is
slowed, not locked."""

from __future__ import annotations

import time
from typing import Any

import pytest

from app.config import get_settings
from tests.helpers import WebClient


def _client(app: Any, ip: str) -> WebClient:
    web = WebClient(app, client=(ip, 50000))
    web.refresh_csrf("/login")
    return web


def _try(web: WebClient, username: str, password: str, forwarded: str | None = None) -> Any:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    data = {"username": username, "password": password, "csrf_token": web.csrf or ""}
    return web.post("/login", data=data, csrf=False, headers=headers)


def test_failures_from_one_client_do_not_lock_the_user_out_elsewhere(app, factory) -> None:
    admin = factory.user("admin")
    attacker = _client(app, "198.51.100.7")
    for _ in range(5):
        assert _try(attacker, admin.username, "wrong-guess").status_code == 401
    assert _try(attacker, admin.username, factory.password).status_code == 429
    assert _try(_client(app, "192.0.2.10"), admin.username, factory.password).status_code == 303


def test_forwarded_addresses_count_only_from_trusted_proxies(app, factory, monkeypatch) -> None:
    admin = factory.user("admin")
    # Untrusted peer: a forged X-Forwarded-For does not give a fresh bucket.
    direct = _client(app, "198.51.100.8")
    for i in range(5):
        _try(direct, admin.username, "wrong-guess", forwarded=f"203.0.113.{i}")
    assert _try(direct, admin.username, factory.password, forwarded="203.0.113.99").status_code == 429
    # Behind a trusted proxy each client has its own bucket (the proxy's own address is not one).
    monkeypatch.setattr(get_settings(), "trusted_proxies", "10.0.0.0/8")
    proxy = _client(app, "10.0.0.2")
    for _ in range(5):
        _try(proxy, admin.username, "wrong-guess", forwarded="spoofed, 203.0.113.50, 10.0.0.3")
    assert _try(proxy, admin.username, factory.password, forwarded="203.0.113.50").status_code == 429
    assert _try(proxy, admin.username, factory.password, forwarded="203.0.113.51").status_code == 303


def test_many_clients_slow_a_username_down_but_its_password_still_works(app, factory, monkeypatch) -> None:
    settings = get_settings()
    monkeypatch.setattr(settings, "login_user_max_failures", 6)
    monkeypatch.setattr(settings, "login_slow_delay_s", 0.5)
    admin = factory.user("admin")
    for i in range(3):
        web = _client(app, f"198.51.100.{20 + i}")
        for _ in range(2):
            assert _try(web, admin.username, "wrong-guess").status_code == 401
    start = time.perf_counter()
    wrong = _try(_client(app, "198.51.100.40"), admin.username, "wrong-again")
    assert wrong.status_code == 401 and time.perf_counter() - start >= 0.5
    start = time.perf_counter()
    right = _try(_client(app, "192.0.2.11"), admin.username, factory.password)
    assert right.status_code == 303 and time.perf_counter() - start >= 0.5


@pytest.mark.parametrize("spec", ["10.0.0.0/33", "proxy.example"])
def test_malformed_trusted_proxies_are_refused(spec: str) -> None:
    from app.config import Settings

    with pytest.raises(ValueError, match="TRUSTED_PROXIES"):
        Settings(trusted_proxies=spec, rlhf_env="test")
