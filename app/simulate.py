"""Simulated labelers from the simulated world, working through the HTTP interface like people do.

They sign in, ask for the next task, read the page, and submit demonstrations, rankings (with a
Likert rating per completion) and written prompts through the same forms a browser posts.
"""

from __future__ import annotations

import html
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser

import httpx

_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
_ACTION = re.compile(r'<form[^>]*id="task-form"[^>]*action="(/label/a/\d+/(demonstration|ranking|prompt))"')


class _TaskPage(HTMLParser):
    """Pulls the prompt text and the completion cards (letter, raw text) out of a task page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.prompt = ""
        self.cards: list[tuple[str, str]] = []
        self._in: str | None = None
        self._cid: str | None = None
        self._buf: list[str] = []
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if self._in:
            self._depth += 1
            return
        if a.get("id") == "prompt-text":
            self._in, self._buf, self._depth = "prompt", [], 1
        elif tag == "article" and "rank-card" in classes:
            self._cid = a.get("data-letter") or ""
        elif "completion-raw" in classes and self._cid is not None:
            self._in, self._buf, self._depth = "card", [], 1

    def handle_endtag(self, tag: str) -> None:
        if not self._in:
            return
        self._depth -= 1
        if self._depth == 0:
            text = "".join(self._buf)
            if self._in == "prompt":
                self.prompt = text
            elif self._cid is not None:
                self.cards.append((self._cid, text))
                self._cid = None
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in:
            self._buf.append(data)


@dataclass
class SimulatedSession:
    """One simulated labeler signed in to a running server."""

    base_url: str
    username: str
    password: str
    seed: int = 0
    done: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        from training.world import SimulatedLabeler

        self.http = httpx.Client(base_url=self.base_url, follow_redirects=False, timeout=60)
        self.labeler = SimulatedLabeler(seed=self.seed)
        self.rng = random.Random(self.seed)
        self.csrf = ""

    def _token(self, page: str) -> str:
        match = _CSRF.search(page)
        if not match:
            raise RuntimeError("no CSRF token on the page")
        self.csrf = html.unescape(match.group(1))
        return self.csrf

    def sign_in(self) -> None:
        """Sign in through the login form."""
        token = self._token(self.http.get("/login").text)
        resp = self.http.post(
            "/login", data={"username": self.username, "password": self.password, "csrf_token": token}
        )
        if resp.status_code != 303:
            raise RuntimeError(f"{self.username} could not sign in ({resp.status_code})")
        self._token(self.http.get("/").text)

    def _post(self, url: str, data: dict[str, str | list[str]]) -> httpx.Response:
        return self.http.post(url, data={**data, "csrf_token": self.csrf})

    def work_one(self, queue_id: int | None = None) -> str | None:
        """Take the next task and submit it; returns its kind, or None when there is no task."""
        resp = self._post("/label/next", {"queue_id": str(queue_id)} if queue_id else {})
        target = resp.headers.get("location", "")
        if not target.startswith("/label/a/"):
            return None
        page = self.http.get(target).text
        self._token(page)
        match = _ACTION.search(page)
        if not match:
            raise RuntimeError(f"unrecognised task page at {target}")
        action, kind = match.groups()
        parsed = _TaskPage()
        parsed.feed(page)
        prompt = parsed.prompt.strip()
        if kind == "demonstration":
            data: dict[str, str | list[str]] = {"text": self.labeler.demonstrate(prompt)}
        elif kind == "prompt":
            from training.world import make_prompts

            data = {"text": make_prompts(1, seed=self.rng.randrange(10**9))[0].text}
        else:
            texts = [t.strip() for _, t in parsed.cards]
            ranks = self.labeler.rank(prompt, texts)
            data = {}
            for (cid, text), rank in zip(parsed.cards, ranks, strict=True):
                data[f"tier_{cid}"] = str(rank)
                data[f"likert_{cid}"] = str(self.labeler.rate(prompt, text.strip()))
        result = self._post(action, data)
        if result.status_code not in (200, 303):
            raise RuntimeError(f"{self.username}: submitting {kind} failed ({result.status_code})")
        self.done[kind] += 1
        return kind


def simulate(
    base_url: str, logins: list[tuple[str, str]], tasks_each: int, queue_id: int | None = None, seed: int = 0
) -> dict[str, Counter[str]]:
    """Each labeler works up to `tasks_each` tasks in turn; returns what each one submitted."""
    sessions = [SimulatedSession(base_url, u, p, seed=seed + i) for i, (u, p) in enumerate(logins)]
    for s in sessions:
        s.sign_in()
    active = list(sessions)
    for _ in range(tasks_each):
        for s in list(active):
            if s.work_one(queue_id) is None:
                active.remove(s)
        if not active:
            break
    return {s.username: s.done for s in sessions}
