"""Sign in and out in Chromium, by keyboard only."""

from __future__ import annotations

import pytest

from tests.factories import Factory

pytestmark = pytest.mark.browser


def test_keyboard_sign_in_and_out(committed_db, live_server, page) -> None:  # type: ignore[no-untyped-def]
    user = Factory(committed_db).user("labeler", "ops", username="kbd_user")
    committed_db.commit()

    page.goto(live_server.url + "/")
    assert page.url.endswith("/login?next=/")
    # The username field has autofocus; Chromium applies it after the load event on a busy
    # machine, so wait for the focus before typing (keys typed earlier go nowhere).
    page.wait_for_function("document.activeElement && document.activeElement.id === 'username'")
    page.keyboard.type("kbd_user")
    page.keyboard.press("Tab")
    page.wait_for_function("document.activeElement && document.activeElement.id === 'password'")
    page.keyboard.type(Factory.password)
    page.keyboard.press("Enter")
    page.wait_for_url(live_server.url + "/")
    assert page.get_by_role("heading", name="Welcome, kbd_user").is_visible()
    assert "labeler, ops" in page.content()

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(live_server.url + "/login")
    page.goto(live_server.url + "/")
    assert "/login" in page.url
    assert page.errors == []
    assert user.id


def test_wrong_password_shows_message(committed_db, live_server, page) -> None:  # type: ignore[no-untyped-def]
    Factory(committed_db).user("labeler", username="wrong_pw_user")
    committed_db.commit()
    page.goto(live_server.url + "/login")
    page.fill("#username", "wrong_pw_user")
    page.fill("#password", "not-the-password")
    page.click("button[type=submit]")
    assert page.get_by_role("alert").inner_text() == "Wrong username or password."
