"""Rankings are blind: nothing on the page orders or identifies a completion by policy version."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from app.enums import TaskKind
from app.labeling.models import Assignment
from app.rankings.models import Completion, Ranking
from app.rankings.service import letter

BIG_ID = 987_650  # completion ids far from any other number on the page


class _Attrs(HTMLParser):
    """Every attribute value on the page, and the completion texts in page order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.values: list[str] = []
        self.names: list[str] = []
        self.texts: list[str] = []
        self._raw = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for key, value in attrs:
            self.values.append(f"{key}={value or ''}")
            if key == "name" and value:
                self.names.append(value)
        self._raw = "completion-raw" in (dict(attrs).get("class") or "").split()

    def handle_data(self, data: str) -> None:
        if self._raw:
            self.texts.append(data.strip())
            self._raw = False


def _mixed_task(factory, db, overlap: int):  # type: ignore[no-untyped-def]
    """A K = 4 task: the first two rows (lowest ids) are the deployed policy's, as sampling inserts them."""
    q = factory.queue(TaskKind.ranking, k=4, overlap=overlap)
    new = factory.model_version(name="policy-new-7f3a")
    parent = factory.model_version(name="policy-parent-91c2")
    t = factory.task(q, completions=0)
    for pos in range(4):
        version = new if pos < 2 else parent
        db.add(Completion(id=BIG_ID + pos, task_id=t.id, prompt_id=t.prompt_id, position=pos,
                          text=f"answer {pos} by {'new' if pos < 2 else 'old'} model",
                          policy_version_id=version.id, sampling_params={"temperature": 1.0}))
    db.flush()
    return q, t, (new, parent)


def test_ranking_page_names_completions_by_letter_only(login, factory, db) -> None:
    labelers = 16
    q, t, versions = _mixed_task(factory, db, overlap=labelers)
    texts = {c.id: c.text for c in db.query(Completion).filter_by(task_id=t.id)}
    first_is_new = []
    for _ in range(labelers):
        web = login("labeler")
        resp = web.post("/label/next", data={"queue_id": str(q.id)})
        aid = int(resp.headers["location"].rsplit("/", 1)[1])
        page = web.get(f"/label/a/{aid}").text
        parsed = _Attrs()
        parsed.feed(page)
        for cid in texts:  # no completion id anywhere in the markup (names, ids, data- attributes)
            assert not any(re.search(rf"\b{cid}\b", v) for v in parsed.values), cid
        for v in versions:
            assert v.name not in page
        fields = [n for n in parsed.names if re.match(r"(tier|likert|flags|comment)_", n)]
        assert fields and all(re.fullmatch(r"(tier|likert|flags|comment)_[A-D]", n) for n in fields)
        assert "data-cid" not in page
        # the page keeps the order stored for this assignment
        a = db.get(Assignment, aid)
        assert a is not None
        assert parsed.texts == [texts[cid] for cid in a.display_order]
        first_is_new.append(a.display_order[0] < BIG_ID + 2)
        # and a posted ranking lands on the completions those letters showed
        form = {f"tier_{letter(i)}": str(i + 1) for i in range(4)}
        form |= {f"likert_{letter(i)}": "4" for i in range(4)}
        assert web.post(f"/label/a/{aid}/ranking", data=form).status_code == 303
        r = db.query(Ranking).filter_by(assignment_id=aid).one()
        stored = {e.completion_id: e.tier for e in r.entries}
        assert stored == {cid: i + 1 for i, cid in enumerate(a.display_order)}
    # the display order is shuffled per assignment: the deployed policy is not always first
    assert 0 < sum(first_is_new) < labelers
