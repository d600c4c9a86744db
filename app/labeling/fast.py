"""One thread hop per labeler request: the transaction, the user check, the work and the page.

The labeler's routes are `async def` functions that parse the form on the event loop and then
call one of these functions in the thread pool, once (FastAPI would otherwise hop between the
loop and the pool for the session dependency, the access rule and the route). Each function
opens one connection and transaction, checks the signed-in user against the users row (epoch,
active, role) in the request's first statement, does the work and renders the response; the
transaction commits before the response leaves, or rolls back on an error.

The common case runs on app.labeling.hotpath (Core statements built once). Everything else runs
the ORM services on a Session bound to the same connection and transaction (`orm_work`), so
every rule of the services still holds there.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime
from types import SimpleNamespace
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import Response
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.orm import Session

from app.auth.access import Claim
from app.auth.models import User
from app.config import get_settings
from app.db import READ_ONLY, get_engine, utcnow
from app.enums import AssignmentStatus, Role, TaskKind
from app.errors import Forbidden, NotAuthenticated
from app.labeling import hotpath
from app.labeling.hotpath import SignedInUser
from app.queueing import OUTBOX_KEY, relay

# SQLite serializes writers on a file lock whose waiters poll with growing sleeps; within one
# process a plain lock hands the write turn over without those sleeps.
_SQLITE_WRITER = threading.Lock()
log = logging.getLogger("app")
_FINISHED = (AssignmentStatus.submitted.value, AssignmentStatus.skipped.value)


class Unit:
    """One request's connection and transaction, and the ORM session on it when a path needs one."""

    def __init__(self, conn: Connection, session: Session | None = None) -> None:
        self.conn = conn
        self._session = session

    def session(self) -> Session:
        """An ORM session on this transaction (the same one for the whole request)."""
        if self._session is None:
            self._session = Session(bind=self.conn, expire_on_commit=False)
        return self._session

    @property
    def used_session(self) -> Session | None:
        """The ORM session if a path opened one."""
        return self._session


@contextmanager
def unit(*, write: bool) -> Iterator[Unit]:
    """One connection and transaction: committed on success, rolled back on an error.

    Reads on PostgreSQL run in autocommit (no BEGIN/COMMIT round trips); on SQLite they take no
    write lock (a WAL snapshot), while writes take the process's writer lock first.
    """
    engine = get_engine()
    sqlite = engine.dialect.name == "sqlite"
    with _SQLITE_WRITER if (write and sqlite) else nullcontext():
        conn = engine.connect()
        u = Unit(conn)
        try:
            if not write:
                conn.execution_options(**({READ_ONLY: True} if sqlite else {"isolation_level": "AUTOCOMMIT"}))
            with conn.begin():
                yield u
                if u.used_session is not None:
                    u.used_session.flush()
            if u.used_session is not None:
                _after_commit(u.used_session)
        finally:
            if u.used_session is not None:
                u.used_session.close()
            conn.close()


def _after_commit(db: Session) -> None:
    """What a session does after its commit, for a session whose connection committed instead:
    run its after-commit hooks (enqueue_after_commit) and relay the outbox messages it recorded."""
    db.dispatch.after_commit(db)
    ids = db.info.pop(OUTBOX_KEY, None)
    if ids:
        try:
            relay(ids)
        except Exception:
            log.exception("outbox relay after commit failed; the scheduled relay will retry")


Units = Callable[..., AbstractContextManager[Unit]]


async def units() -> Units:
    """The unit-of-work factory (a dependency, so tests can bind it to their transaction)."""
    return unit


UnitsDep = Annotated[Units, Depends(units)]


def checked(request: Request, claim: Claim, user: SignedInUser | None) -> SignedInUser:
    """The session's user if still valid (active, same epoch) and a labeler; else 401 or 403."""
    if user is None or not user.is_active or user.session_epoch != claim.epoch:
        request.session.clear()
        request.state.user = None
        raise NotAuthenticated("Please sign in.")
    request.state.user = user
    if not user.has_role(Role.labeler):
        raise Forbidden("Your account does not have access to this page.")
    return user


def orm_work(request: Request, u: Unit, claim: Claim, work: Callable[[Session, User], Response]) -> Response:
    """Run the ORM service path on this transaction with the checked ORM user."""
    from app.auth import service as auth

    checked(request, claim, hotpath.load_user(u.conn, claim.uid))
    db = u.session()
    user = auth.get_user(db, claim.uid)
    assert user is not None
    return work(db, user)


def orm_route(
    request: Request, units: Units, claim: Claim, work: Callable[[Session, User], Response], *,
    write: bool = True,
) -> Response:
    """A labeler route through the ORM services, in one thread hop and one transaction."""
    with units(write=write) as u:
        return orm_work(request, u, claim, work)


# ---------------------------------------------------------------- the task page


def show_task(request: Request, units: Units, claim: Claim, assignment_id: int) -> Response:
    """GET a task page: one statement for everything but the completions (hot path)."""
    from app.labeling import pages
    from app.labeling.routes import render_task

    with units(write=False) as u:
        row = hotpath.page_row(u.conn, claim.uid, assignment_id) if get_settings().web_hot_path else None
        if row is None or not _plain_view(row) or not _plain_page(row):
            return orm_work(request, u, claim, lambda db, user: render_task(
                request, pages.task_page(db, user, assignment_id)))
        checked(request, claim, hotpath.user_from(row))
    page = _page(row, {int(cid): str(body) for cid, body in row["completions"] or []})
    draft = None
    if row["t_kind"] == TaskKind.ranking.value:
        from app.rankings.schemas import from_draft

        draft = from_draft(row["draft_text"])
    return render_task(request, pages.with_submission(page, draft) if draft is not None else page)


def _plain_view(row: RowMapping) -> bool:
    """True when the page needs no lease check: finished, or live and nothing paused."""
    if row["status"] in _FINISHED:
        return True
    leased = row["status"] == AssignmentStatus.leased.value
    live = leased and hotpath.aware(row["lease_expires_at"]) > utcnow()
    return live and not row["u_is_paused"] and not row["q_is_paused"]


def _plain_page(row: RowMapping) -> bool:
    """True when the page is a plain one: not a conversation, no edit box (the services render those)."""
    return row["p_messages"] is None and not row["q_allow_edits"]


def _page(row: RowMapping, texts: dict[int, str]) -> Any:
    from app.labeling.pages import TaskPage
    from app.rankings.service import letter

    a = SimpleNamespace(
        id=row["id"], task_id=row["task_id"], user_id=row["user_id"], status=row["status"],
        leased_at=row["leased_at"], lease_expires_at=row["lease_expires_at"],
        display_order=row["display_order"], draft_text=row["draft_text"],
        draft_saved_at=row["draft_saved_at"], guideline_version_id=row["guideline_version_id"],
    )
    task = SimpleNamespace(
        id=row["task_id"], kind=row["t_kind"], status=row["t_status"], queue_id=row["t_queue_id"],
        prompt_id=row["t_prompt_id"], hint=row["t_hint"], overlap=row["t_overlap"],
        done_count=row["t_done_count"],
    )
    queue = SimpleNamespace(id=row["t_queue_id"], name=row["q_name"], is_paused=row["q_is_paused"])
    prompt = SimpleNamespace(id=row["t_prompt_id"], text=row["p_text"]) if row["t_prompt_id"] else None
    guideline = (
        SimpleNamespace(id=row["guideline_version_id"], version=row["g_version"], body_md=row["g_body_md"])
        if row["guideline_version_id"] else None
    )
    order = hotpath.shown_order(row["display_order"] or [], list(texts))
    shown = [(letter(i), SimpleNamespace(id=cid, text=texts[cid])) for i, cid in enumerate(order)]
    return TaskPage(a, task, queue, prompt, guideline, shown, "")  # type: ignore[arg-type]


# ---------------------------------------------------------------- submitting a ranking


def submit_ranking(
    request: Request, units: Units, claim: Claim, assignment_id: int, sub: Any,
    slow: Callable[[Session, User], Response],
) -> Response:
    """POST a ranking: store it and lease the next task in one transaction of a few statements.

    `slow` (the ORM route body) handles everything but a valid ranking on a live lease.
    """
    from app.labeling.routes import go
    from app.rankings.schemas import check_against, dense_tiers
    from app.rankings.service import letter

    now = utcnow()
    with units(write=True) as u:
        conn = u.conn
        row = hotpath.lock_row(conn, claim.uid, assignment_id) if get_settings().web_hot_path else None
        if (row is None or row["user_id"] != claim.uid or not _plain_submit(row, now)
                or sub.edit_of or sub.edit_text):
            return orm_work(request, u, claim, slow)
        user = checked(request, claim, hotpath.user_from(row))
        shown = list(row["display_order"] or [])
        if len(set(shown)) != len(shown) or len(shown) != row["t_k"]:
            # The stored order was made from the task's completions; recheck it when counts differ.
            ids = list(conn.execute(hotpath.COMPLETION_IDS, {"tid": row["t_id"]}).scalars())
            shown = hotpath.shown_order(shown, ids)
        keys = {letter(i): cid for i, cid in enumerate(shown)}
        if check_against(sub, list(keys), len(shown)):
            return orm_work(request, u, claim, slow)
        tiers = dense_tiers({key: sub.entries[key].tier or 0 for key in keys})
        entries = [
            {"completion_id": cid, "tier": tiers[key], "likert": sub.entries[key].likert,
             "flags": list(sub.entries[key].flags), "comment": sub.entries[key].comment.strip()}
            for key, cid in keys.items()
        ]
        rid, rows = hotpath.store_ranking(conn, row, user.id, shown, entries, sub.all_unacceptable,
                                          sub.comment.strip(), now)
        delta = hotpath.agreement_delta(rows, rid)
        nxt = _next(u, user, row["t_queue_id"], now, oldest_first=row["q_task_order"] == "oldest")
        hotpath.bump_counters(conn, row["t_queue_id"], user.id, delta)
        flash, url = _then(u, user.id, row["t_queue_id"], nxt, "Ranking saved.")
    request.session["flash"] = flash
    return go(request, url)


def _plain_submit(row: RowMapping, now: datetime, kind: TaskKind = TaskKind.ranking) -> bool:
    """True for the common submit: a live lease on an open task of `kind`, nothing paused."""
    return (
        row["status"] == AssignmentStatus.leased.value
        and hotpath.aware(row["lease_expires_at"]) > now
        and row["t_kind"] == kind.value
        and row["t_status"] == hotpath.OPEN
        and not row["q_is_paused"]
        and not row["u_is_paused"]
    )


# ---------------------------------------------------------------- the next task


def take_next(
    request: Request, units: Units, claim: Claim, queue_id: int | None,
    slow: Callable[[Session, User], Response],
) -> Response:
    """POST "next task" in one queue: the lease held, or a new one, in a few statements.

    `slow` (the ORM route body) handles the rest: no queue named, a paused labeler, gold due, a
    queue ordered by reward-model uncertainty, and no free slot without waiting (it waits, and
    says when there is nothing). A ranking queue is checked for restocking, as the route does.
    """
    from app.labeling.routes import go

    if queue_id is None or not get_settings().web_hot_path:
        return orm_route(request, units, claim, slow)
    now = utcnow()
    with units(write=True) as u:
        row = hotpath.take_row(u.conn, claim.uid, queue_id, now)
        if row is None:
            return orm_work(request, u, claim, slow)  # no such user: the check there says so
        user = checked(request, claim, hotpath.user_from(row))
        nxt = None
        if not (user.is_paused or row["gold"] or row["q_task_order"] != "oldest"):
            lease_s = get_settings().lease_seconds
            nxt = row["held"] or hotpath.lease_next(u.conn, user.id, queue_id, now, lease_s)
        if nxt is None:
            return orm_work(request, u, claim, slow)
        if row["q_kind"] == TaskKind.ranking.value:
            from app.sampling import service as restock

            restock.request_restock_for(u.session(), queue_id)  # sent after the commit, if low
    return go(request, f"/label/a/{nxt}")


# ---------------------------------------------------------------- submitting a demonstration


def submit_demonstration(
    request: Request, units: Units, claim: Claim, assignment_id: int, text: str,
    slow: Callable[[Session, User], Response],
) -> Response:
    """POST a demonstration: store it and lease the next task in one transaction (hot path).

    `slow` (the ORM route body) handles everything but valid text on a live lease: a double
    submit, a lost lease, a paused queue, empty or too long text (the page comes back, text kept).
    """
    from app.labeling.routes import go

    now = utcnow()
    clean = text.strip()
    with units(write=True) as u:
        conn = u.conn
        row = hotpath.lock_row(conn, claim.uid, assignment_id) if get_settings().web_hot_path else None
        if (row is None or row["user_id"] != claim.uid or row["t_prompt_id"] is None
                or not _plain_submit(row, now, TaskKind.demonstration)
                or not 0 < len(clean) <= get_settings().max_text_chars):
            return orm_work(request, u, claim, slow)
        user = checked(request, claim, hotpath.user_from(row))
        hotpath.store_demonstration(conn, row, user.id, clean, now)
        nxt = _next(u, user, row["t_queue_id"], now, oldest_first=row["q_task_order"] == "oldest")
        hotpath.bump_counters(conn, row["t_queue_id"], user.id, {})  # counters.label_added
        flash, url = _then(u, user.id, row["t_queue_id"], nxt, "Demonstration saved.")
    request.session["flash"] = flash
    return go(request, url)


def _then(u: Unit, user_id: int, queue_id: int, nxt: int | None, message: str) -> tuple[str, str]:
    """As routes.advance after a hot-path submit: the flash and where to go (next task or home).
    Set them on the session only after the commit: a failed commit must not say "saved"."""
    if nxt is None:
        from app.labeling import service

        return f"{message} {service.nothing_next(u.session(), user_id, queue_id)}", "/label"
    return f"{message} Here is the next one.", f"/label/a/{nxt}"


def _next(
    u: Unit, user: SignedInUser, queue_id: int, now: datetime, *, oldest_first: bool = True
) -> int | None:
    """The next assignment of the queue for `user`: the live lease held, gold, or a new lease.

    Queues in another order (reward-model uncertainty) lease through the services."""
    held, gold = hotpath.held_or_gold(u.conn, user.id, queue_id, now)
    if held is not None:
        return held
    if gold or not oldest_first:
        from app.auth import service as auth
        from app.labeling import service

        db = u.session()
        orm_user = auth.get_user(db, user.id)
        assert orm_user is not None
        a = service.next_task(db, orm_user, queue_id, wait=False)
        db.flush()
        return a.id if a is not None else None
    return hotpath.lease_next(u.conn, user.id, queue_id, now, get_settings().lease_seconds)
