"""The admin console in Chromium: import, personal-data review, queue settings, quality, export download."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from app.auth.service import create_user
from app.enums import TaskKind
from tests.admin.builders import ranking

PASSWORD = "admin-browser-pass"


def _sign_in(page, url: str, username: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(url + "/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(url + "/")


@pytest.mark.browser
def test_admin_imports_reviews_personal_data_and_downloads_an_export(
    live_server, committed_db, page, tmp_path: Path
) -> None:
    create_user(committed_db, "boss", PASSWORD, ["admin"])
    committed_db.commit()
    url = live_server.url
    _sign_in(page, url, "boss")
    page.click("a[href='/admin'] >> nth=0")
    page.get_by_role("link", name="New queue").first.click()
    page.fill("#q-name", "Browser demos")
    page.select_option("#q-kind", "demonstration")
    page.fill("#q-overlap", "2")
    page.fill("#q-guidelines", "# Be kind\n<script>window.pwned = 1</script>")
    page.click("form button[type=submit] >> text=Create queue")
    page.wait_for_url(f"{url}/admin/queues/*")
    assert page.locator("h1").first.inner_text().startswith("Browser demos")
    assert page.evaluate("window.pwned") is None  # guideline HTML is shown as text, never run

    src = tmp_path / "prompts.jsonl"
    src.write_text(
        "\n".join(
            [
                json.dumps({"prompt": "Explain tides.", "user_id": "u1"}),
                "{oops",
                json.dumps({"prompt": "Write to jane@example.org about the invoice", "user_id": "u2"}),
            ]
        )
        + "\n"
    )
    page.set_input_files("#i-file", str(src))
    page.click("#import-form button[type=submit]")
    page.wait_for_url(f"{url}/admin/imports/*")
    assert "Imported 2 prompts; 1 bad row rejected." in page.locator("#import-summary").inner_text()
    assert "2\trejected\tnot valid JSON" in page.locator("#import-report").inner_text()

    page.click("text=Personal data")
    page.click("#held a")
    assert page.locator("mark.pii").first.inner_text().startswith("jane@example.org")
    page.click("#redact-form button[type=submit]")  # a preview of the text to release
    assert page.inner_text("#release-text") == "Write to [EMAIL] about the invoice"
    page.click("#confirm-release")
    page.wait_for_url(f"{url}/admin/pii")
    assert "Nothing is held for review" in page.inner_text("main")

    page.click(".subnav >> text=Queues")
    page.click("text=Browser demos")
    assert page.locator('[data-stat="waiting"]').inner_text() == "2"

    page.click(".subnav >> text=Exports")
    page.click("#export-form button[type=submit]")
    page.wait_for_url(f"{url}/exports/jobs/*")  # queued for a worker; this test is the worker
    assert page.locator("#export-job-status").inner_text() in ("queued", "running")
    from app.exports.jobs import run_export

    run_export(int(page.url.rsplit("/", 1)[1]))
    page.wait_for_url(re.compile(r"/exports/\d+$"))  # the polling page moves on to the batch
    digest = page.locator("#content-hash").inner_text()
    assert len(digest) == 64
    with page.expect_download() as info:
        page.click("text=prompts.jsonl")
    rows = [json.loads(x) for x in Path(info.value.path()).read_text().splitlines()]
    assert [r["prompt"] for r in rows] == ["Explain tides.", "Write to [EMAIL] about the invoice"]
    assert not page.errors  # type: ignore[attr-defined]


@pytest.mark.browser
def test_quality_page_shows_agreement_and_pauses_a_labeler(live_server, committed_db, page) -> None:
    from tests.factories import Factory

    factory = Factory(committed_db)
    create_user(committed_db, "qc_admin", PASSWORD, ["admin"])
    a, b = factory.user("labeler", username="qc_ann"), factory.user("labeler", username="qc_ben")
    queue = factory.queue(TaskKind.ranking, k=4, overlap=2, name="QC ranks")
    task = factory.task(queue)
    ranking(committed_db, task, a, [1, 2, 3, 4])
    ranking(committed_db, task, b, [1, 2, 4, 3])
    a_id = a.id
    committed_db.commit()
    url = live_server.url
    _sign_in(page, url, "qc_admin")
    page.goto(url + "/admin/quality")
    assert page.locator("#overall-agreement").inner_text() == "83.3 %"
    row = page.locator("#labelers tr[data-user=qc_ben]")
    row.get_by_role("button", name="Pause qc_ben").click()
    page.wait_for_url(url + "/admin/quality")
    assert "paused" in page.locator("#labelers tr[data-user=qc_ben]").inner_text()
    committed_db.refresh(b)
    paused = b.is_paused
    committed_db.rollback()  # end the read (on SQLite a transaction holds the write lock)
    assert paused
    page.goto(url + f"/admin/review?labeler={a_id}")
    page.click("#labels a")
    assert "Tier 1" in page.inner_text("main")
