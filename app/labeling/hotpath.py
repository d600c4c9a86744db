"""The labeler's hot path in SQLAlchemy Core: statements built once, run on a plain Connection.

Used by app/labeling/fast.py for the requests a labeler makes hundreds of times an hour (show a
task, submit a ranking, lease the next task). Every statement here is a module-level constant
with bound parameters, so SQLAlchemy compiles it once per process and memoizes its cache key;
no ORM unit of work, identity map or row loading is involved. The same statements run on
PostgreSQL and SQLite (FOR UPDATE renders to nothing on SQLite, whose writers are serialized by
BEGIN IMMEDIATE). Anything unusual (a double submit, an expired lease, a paused queue, a gold
queue, an invalid ranking) is left to the ORM services, which keep the full rules.

The rules kept here are the services' own: a slot is taken only under the task row's lock after
counting live leases in a fresh statement (app.labeling.leasing), never the same item twice to
a labeler (the eligibility test and the (task, user) unique constraint), the session epoch and
roles checked against the users row in the request's first statement.

One file past 400 lines on purpose: every hot-path statement side by side, so that a change to a
rule they copy from the services (eligibility, leasing, counters) is made to all of them at once.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    BindParameter,
    Table,
    and_,
    bindparam,
    exists,
    func,
    insert,
    not_,
    or_,
    select,
    text,
    type_coerce,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, RowMapping

from app.auth.models import User, UserRole
from app.demonstrations.models import Demonstration
from app.enums import AssignmentStatus, PIIStatus, Role, TaskKind, TaskStatus
from app.labeling.models import Assignment, Task
from app.prompts.models import GuidelineVersion, Prompt, PromptQueue
from app.quality import metrics
from app.quality.counters import COLUMNS
from app.quality.models import LabelerAgreement, QueueAgreement
from app.rankings.models import Completion, Ranking, RankingEntry

A: Table = Assignment.__table__  # type: ignore[assignment]
T: Table = Task.__table__  # type: ignore[assignment]
Q: Table = PromptQueue.__table__  # type: ignore[assignment]
P: Table = Prompt.__table__  # type: ignore[assignment]
G: Table = GuidelineVersion.__table__  # type: ignore[assignment]
C: Table = Completion.__table__  # type: ignore[assignment]
U: Table = User.__table__  # type: ignore[assignment]
UR: Table = UserRole.__table__  # type: ignore[assignment]
RK: Table = Ranking.__table__  # type: ignore[assignment]
RE: Table = RankingEntry.__table__  # type: ignore[assignment]
D: Table = Demonstration.__table__  # type: ignore[assignment]
QA: Table = QueueAgreement.__table__  # type: ignore[assignment]
LA: Table = LabelerAgreement.__table__  # type: ignore[assignment]

LEASED = AssignmentStatus.leased.value
SUBMITTED = AssignmentStatus.submitted.value
SKIPPED = AssignmentStatus.skipped.value
OPEN = TaskStatus.open.value
MAX_ATTEMPTS = 50


@dataclass(frozen=True)
class SignedInUser:
    """The signed-in user as the hot path reads it (one row, no ORM): what pages and rules need."""

    id: int
    username: str
    display_name: str
    is_active: bool
    is_paused: bool
    session_epoch: int
    roles: frozenset[Role]

    def has_role(self, *roles: Role) -> bool:
        """True when the user holds any of `roles`."""
        return bool(self.roles.intersection(roles))


# ---------------------------------------------------------------- the user, in the first statement

_UID: BindParameter[Any] = bindparam("uid")
_ROLE_COLS = [
    exists().where(UR.c.user_id == U.c.id, UR.c.role == r.value).label(f"role_{r.value}") for r in Role
]
_USER_COLS = [
    U.c.id.label("u_id"), U.c.username.label("u_username"), U.c.display_name.label("u_display_name"),
    U.c.is_active.label("u_is_active"), U.c.is_paused.label("u_is_paused"),
    U.c.session_epoch.label("u_epoch"), *_ROLE_COLS,
]
USER = select(*_USER_COLS).where(U.c.id == _UID)


def user_from(row: RowMapping) -> SignedInUser:
    """The user columns of a hot-path row (see _USER_COLS)."""
    return SignedInUser(
        id=row["u_id"], username=row["u_username"], display_name=row["u_display_name"],
        is_active=bool(row["u_is_active"]), is_paused=bool(row["u_is_paused"]),
        session_epoch=row["u_epoch"], roles=frozenset(r for r in Role if row[f"role_{r.value}"]),
    )


def load_user(conn: Connection, uid: int) -> SignedInUser | None:
    """The user row with its roles (one statement), or None."""
    row = conn.execute(USER, {"uid": uid}).mappings().first()
    return user_from(row) if row is not None else None


# ---------------------------------------------------------------- a task page (one statement + completions)

def _pairs_of_task(dialect: str) -> Any:
    """[[completion id, text], ...] of the task as one JSON value (an aggregate per dialect)."""
    if dialect == "postgresql":
        agg = func.json_agg(func.json_build_array(C.c.id, C.c.text))
    else:
        agg = func.json_group_array(func.json_array(C.c.id, C.c.text))
    return type_coerce(select(agg).where(C.c.task_id == T.c.id).scalar_subquery(), JSON)


def _page(dialect: str) -> Any:
    return (
        select(
            A.c.id, A.c.user_id, A.c.task_id, A.c.status, A.c.leased_at, A.c.lease_expires_at,
            A.c.display_order, A.c.draft_text, A.c.draft_saved_at, A.c.guideline_version_id,
            T.c.kind.label("t_kind"), T.c.status.label("t_status"), T.c.queue_id.label("t_queue_id"),
            T.c.prompt_id.label("t_prompt_id"), T.c.hint.label("t_hint"), T.c.overlap.label("t_overlap"),
            T.c.done_count.label("t_done_count"),
            Q.c.name.label("q_name"), Q.c.is_paused.label("q_is_paused"),
            Q.c.allow_edits.label("q_allow_edits"),
            P.c.text.label("p_text"), P.c.messages.label("p_messages"),
            G.c.version.label("g_version"), G.c.body_md.label("g_body_md"),
            _pairs_of_task(dialect).label("completions"),
            *_USER_COLS,
        )
        .select_from(
            A.join(T, T.c.id == A.c.task_id)
            .join(Q, Q.c.id == T.c.queue_id)
            .join(U, U.c.id == _UID)
            .outerjoin(P, P.c.id == T.c.prompt_id)
            .outerjoin(G, G.c.id == A.c.guideline_version_id)
        )
        .where(A.c.id == bindparam("aid"), A.c.user_id == _UID)
    )


PAGE = {d: _page(d) for d in ("postgresql", "sqlite")}
COMPLETION_IDS = select(C.c.id).where(C.c.task_id == bindparam("tid"))


def page_row(conn: Connection, uid: int, assignment_id: int) -> RowMapping | None:
    """The assignment of `uid` with its task, queue, prompt, guideline, completions ("completions":
    [[id, text], ...]) and the user, in one statement (or None)."""
    return conn.execute(PAGE[conn.dialect.name], {"uid": uid, "aid": assignment_id}).mappings().first()


def shown_order(display_order: Sequence[int], ids: Sequence[int]) -> list[int]:
    """Completion ids in the assignment's display order, any new ones appended (as the service)."""
    have = set(ids)
    order = [cid for cid in display_order if cid in have]
    return order + sorted(cid for cid in have if cid not in set(order))


def aware(at: datetime) -> datetime:
    """SQLite returns naive datetimes; every stored time is UTC."""
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


# ---------------------------------------------------------------- submitting a ranking

LOCK = (
    select(
        A.c.id, A.c.user_id, A.c.status, A.c.leased_at, A.c.lease_expires_at, A.c.display_order,
        A.c.guideline_version_id,
        T.c.id.label("t_id"), T.c.kind.label("t_kind"), T.c.status.label("t_status"),
        T.c.overlap.label("t_overlap"), T.c.done_count.label("t_done_count"),
        T.c.queue_id.label("t_queue_id"), T.c.prompt_id.label("t_prompt_id"),
        Q.c.is_paused.label("q_is_paused"), Q.c.task_order.label("q_task_order"),
        select(func.count(C.c.id)).where(C.c.task_id == T.c.id).scalar_subquery().label("t_k"),
        *_USER_COLS,
    )
    .select_from(A.join(T, T.c.id == A.c.task_id).join(Q, Q.c.id == T.c.queue_id).join(U, U.c.id == _UID))
    .where(A.c.id == bindparam("aid"))
    .with_for_update(of=[T, A])
)
FINISH = (
    update(A)
    .where(A.c.id == bindparam("aid"))
    .values(status=SUBMITTED, finished_at=bindparam("now"), time_spent_ms=bindparam("spent"),
            lease_expires_at=bindparam("now"))
)
COUNT_LABEL = (
    update(T)
    .where(T.c.id == bindparam("tid"))
    .values(done_count=bindparam("done"), status=bindparam("status"), completed_at=bindparam("completed"))
)
ADD_RANKING = insert(RK).returning(RK.c.id)
ADD_ENTRIES = insert(RE)
TASK_RANKINGS = (
    select(RK.c.id, RK.c.user_id, RE.c.completion_id, RE.c.tier)
    .join(RE, RE.c.ranking_id == RK.c.id)
    .where(RK.c.task_id == bindparam("tid"))
    .order_by(RK.c.id)
)


def lock_row(conn: Connection, uid: int, assignment_id: int) -> RowMapping | None:
    """Lock the assignment and its task (as lock_assignment does) and read them with the user."""
    return conn.execute(LOCK, {"uid": uid, "aid": assignment_id}).mappings().first()


# PostgreSQL: the four writes of a submit and the read of the task's other rankings in one
# statement (data-modifying CTEs; the final SELECT sees the rankings committed before the lock).
STORE_PG = text("""
WITH fin AS (
  UPDATE assignments SET status = 'submitted', finished_at = :now, time_spent_ms = :spent,
         lease_expires_at = :now
  WHERE id = :aid
), cnt AS (
  UPDATE tasks SET done_count = :done, status = :status, completed_at = :completed WHERE id = :tid
), rk AS (
  INSERT INTO rankings (assignment_id, task_id, user_id, guideline_version_id, display_order,
                        all_unacceptable, comment, time_spent_ms, created_at)
  VALUES (:aid, :tid, :uid, :gid, CAST(:display_order AS JSON), :all_unacceptable, :comment, :spent, :now)
  RETURNING id
), ent AS (
  INSERT INTO ranking_entries (ranking_id, completion_id, tier, likert, flags, comment)
  SELECT rk.id, e.completion_id, e.tier, e.likert, COALESCE(e.flags, '[]'::json), e.comment
  FROM rk, json_to_recordset(CAST(:entries AS JSON))
       AS e(completion_id int, tier int, likert int, flags json, comment text)
)
SELECT rk.id,
       (SELECT json_agg(json_build_array(r.id, r.user_id, re.completion_id, re.tier))
        FROM rankings r JOIN ranking_entries re ON re.ranking_id = r.id WHERE r.task_id = :tid) AS others
FROM rk
""")


def store_ranking(
    conn: Connection, row: RowMapping, user_id: int, shown: list[int], entries: list[dict[str, Any]],
    all_unacceptable: bool, comment: str, now: datetime,
) -> tuple[int, list[tuple[int, int, int, int]]]:
    """Mark the locked assignment submitted, count the label on its task and store the ranking.

    Returns the ranking id and every ranking entry of the task, the new one's included, as
    (ranking id, user id, completion id, tier), for the agreement counters.
    """
    spent, task = _finished(row, now)
    ranking = {"aid": row["id"], "uid": user_id, "gid": row["guideline_version_id"], "now": now,
               "spent": spent, "all_unacceptable": all_unacceptable, "comment": comment}
    if conn.dialect.name == "postgresql":
        rid, others = conn.execute(STORE_PG, {
            **task, **ranking, "display_order": json.dumps(shown), "entries": json.dumps(entries),
        }).one()
        rows = [tuple(r) for r in others or []]
    else:
        conn.execute(FINISH, {"aid": row["id"], "now": now, "spent": spent})
        conn.execute(COUNT_LABEL, task)
        rid = int(conn.execute(ADD_RANKING, {
            "assignment_id": row["id"], "task_id": row["t_id"], "user_id": user_id,
            "guideline_version_id": row["guideline_version_id"], "display_order": shown,
            "all_unacceptable": all_unacceptable, "comment": comment, "time_spent_ms": spent,
            "created_at": now,
        }).scalar_one())
        rows = [tuple(r) for r in conn.execute(TASK_RANKINGS, {"tid": row["t_id"]})]
        conn.execute(ADD_ENTRIES, [{**e, "ranking_id": rid} for e in entries])
    rows += [(rid, user_id, e["completion_id"], e["tier"]) for e in entries]
    return int(rid), rows


# ---------------------------------------------------------------- submitting a demonstration

FINISH_DEMO = FINISH.values(draft_text=bindparam("text"))
ADD_DEMO = insert(D)
# PostgreSQL: the three writes of a demonstration submit in one statement.
STORE_DEMO_PG = text("""
WITH fin AS (
  UPDATE assignments SET status = 'submitted', finished_at = :now, time_spent_ms = :spent,
         lease_expires_at = :now, draft_text = :text
  WHERE id = :aid
), cnt AS (
  UPDATE tasks SET done_count = :done, status = :status, completed_at = :completed WHERE id = :tid
)
INSERT INTO demonstrations (assignment_id, task_id, prompt_id, user_id, text, guideline_version_id,
                            time_spent_ms, created_at)
VALUES (:aid, :tid, :pid, :uid, :text, :gid, :spent, :now)
""")


def store_demonstration(conn: Connection, row: RowMapping, user_id: int, text_: str, now: datetime) -> None:
    """Mark the locked assignment submitted (its draft = the text, as the service does), count
    the label on its task and store the demonstration (demonstrations.service's writes)."""
    spent, task = _finished(row, now)
    if conn.dialect.name == "postgresql":
        conn.execute(STORE_DEMO_PG, {
            **task, "aid": row["id"], "pid": row["t_prompt_id"], "uid": user_id, "text": text_,
            "gid": row["guideline_version_id"], "spent": spent, "now": now,
        })
        return
    conn.execute(FINISH_DEMO, {"aid": row["id"], "now": now, "spent": spent, "text": text_})
    conn.execute(COUNT_LABEL, task)
    conn.execute(ADD_DEMO, {
        "assignment_id": row["id"], "task_id": row["t_id"], "prompt_id": row["t_prompt_id"],
        "user_id": user_id, "text": text_, "guideline_version_id": row["guideline_version_id"],
        "time_spent_ms": spent, "created_at": now,
    })


def _finished(row: RowMapping, now: datetime) -> tuple[int, dict[str, Any]]:
    """Time spent on a locked assignment, and its task's counters with this label (service.finish)."""
    spent = max(0, int((now - aware(row["leased_at"])).total_seconds() * 1000))
    done = row["t_done_count"] + 1
    full = done >= row["t_overlap"]
    status = TaskStatus.done.value if full else row["t_status"]
    return spent, {"tid": row["t_id"], "done": done, "status": status, "completed": now if full else None}


def agreement_delta(
    rows: list[tuple[int, int, int, int]], ranking_id: int
) -> dict[int | None, metrics.Counts]:
    """What the new ranking adds to its queue's and labelers' agreement (counters.ranking_added)."""
    by_id: dict[int, tuple[int, dict[int, int]]] = {}
    for rid, uid, cid, tier in sorted(rows, key=lambda r: r[0]):
        by_id.setdefault(rid, (uid, {}))[1][cid] = tier
    before = metrics.task_counts([v for rid, v in by_id.items() if rid != ranking_id])
    after = metrics.task_counts(list(by_id.values()))
    return metrics.counts_delta(before, after)


def _upsert(dialect: Any, table: Any, keys: tuple[str, ...], cols: tuple[str, ...]) -> Any:
    stmt = dialect.insert(table)
    return stmt.on_conflict_do_update(
        index_elements=list(keys), set_={c: table.c[c] + stmt.excluded[c] for c in cols}
    )


_LA_COLS = (*COLUMNS, "labels")
BUMPS = {
    name: (_upsert(d, QA, ("queue_id",), COLUMNS), _upsert(d, LA, ("queue_id", "user_id"), _LA_COLS))
    for name, d in (("postgresql", postgresql), ("sqlite", sqlite))
}


def _values(counts: Sequence[float]) -> dict[str, float | int]:
    return {c: float(v) if c == "tau_sum" else int(v) for c, v in zip(COLUMNS, counts, strict=True)}


def bump_counters(
    conn: Connection, queue_id: int, user_id: int, delta: dict[int | None, metrics.Counts]
) -> None:
    """Add a ranking's delta to the counter rows: the queue's row first, then labelers by id.

    Called last before the commit: the queue's row is the one every submit of the queue
    updates, so it is held only for this statement, the labelers' rows and the commit.
    """
    queue_bump, labeler_bump = BUMPS[conn.dialect.name]
    if None in delta:
        conn.execute(queue_bump, {"queue_id": queue_id, **_values(delta[None])})
    rows = [
        {"queue_id": queue_id, "user_id": u, **_values(delta.get(u, metrics.ZERO)),
         "labels": int(u == user_id)}
        for u in sorted({k for k in delta if k is not None} | {user_id})
    ]
    conn.execute(labeler_bump, rows)


# ---------------------------------------------------------------- leasing the next task

_NOW: BindParameter[Any] = bindparam("now")
_QID: BindParameter[Any] = bindparam("qid")


def _live_lease_of(user: Any) -> Any:
    return and_(A.c.user_id == user, A.c.status == LEASED, A.c.lease_expires_at > _NOW)


_HELD = (
    select(A.c.id)
    .join(T, T.c.id == A.c.task_id)
    .where(_live_lease_of(_UID), T.c.status == OPEN, T.c.queue_id == _QID)
    .order_by(A.c.leased_at)
    .limit(1)
    .scalar_subquery()
)
_GOLD = exists().where(Q.c.id == _QID, Q.c.gold_rate > 0, Q.c.is_paused.is_(False))
HELD_OR_GOLD = select(_HELD.label("held"), _GOLD.label("gold"))
# "Next task" in one queue: the user, the lease held, gold due, and how the queue hands out tasks.
TAKE = select(
    *_USER_COLS, _HELD.label("held"), _GOLD.label("gold"),
    select(Q.c.task_order).where(Q.c.id == _QID).scalar_subquery().label("q_task_order"),
    select(Q.c.kind).where(Q.c.id == _QID).scalar_subquery().label("q_kind"),
).where(U.c.id == _UID)


def take_row(conn: Connection, uid: int, queue_id: int, now: datetime) -> RowMapping | None:
    """The user (see user_from), `held`, `gold`, `q_task_order` and `q_kind` in one statement."""
    return conn.execute(TAKE, {"uid": uid, "qid": queue_id, "now": now}).mappings().first()

_LIVE_COUNT = (
    select(func.count(A.c.id)).where(A.c.task_id == T.c.id, A.c.status == LEASED, A.c.lease_expires_at > _NOW)
    .scalar_subquery()
)
_BLOCKED = exists().where(
    A.c.task_id == T.c.id,
    A.c.user_id == _UID,
    or_(A.c.status.in_([SUBMITTED, SKIPPED]), and_(A.c.status == LEASED, A.c.lease_expires_at > _NOW)),
)
# The task's prompt comes in by an outer join on its key, not as EXISTS: inside this OR,
# PostgreSQL runs an EXISTS as a hashed subplan, a scan of every prompt for each lease (3.5 ms
# of the 6.8 ms candidate query at 10 000 prompts; linear in the prompts table).
_SERVABLE = or_(
    and_(T.c.prompt_id.is_(None), T.c.kind == TaskKind.write_prompt.value),
    and_(
        P.c.pii_status.in_([PIIStatus.clear.value, PIIStatus.redacted.value]),
        or_(P.c.author_id.is_(None), P.c.author_id != _UID),
    ),
)
_LATEST_GUIDELINE = (
    select(G.c.id).where(G.c.queue_id == T.c.queue_id).order_by(G.c.version.desc()).limit(1).scalar_subquery()
)


# app.labeling.leasing._eligible for one queue, walking (queue_id, status, id) in order; rows
# other transactions hold are skipped (SQLite renders no locking clause: its writers are serial).
CANDIDATE = (
    select(T.c.id, _LATEST_GUIDELINE.label("guideline_id"))
    .join(Q, Q.c.id == T.c.queue_id)
    .outerjoin(P, P.c.id == T.c.prompt_id)
    .where(
        T.c.queue_id == _QID,
        T.c.status == OPEN,
        T.c.done_count + _LIVE_COUNT < T.c.overlap,
        not_(_BLOCKED),
        _SERVABLE,
        Q.c.is_paused.is_(False),
        T.c.is_gold.is_(False),
        T.c.id.not_in(bindparam("skip", expanding=True)),
    )
    .order_by(T.c.id)
    .limit(1)
    .with_for_update(skip_locked=True, of=T)
)
_MINE = (
    select(A.c.id).where(A.c.task_id == T.c.id, A.c.user_id == _UID).scalar_subquery()
)
_EXPIRED = exists().where(A.c.task_id == T.c.id, A.c.status == LEASED, A.c.lease_expires_at <= _NOW)
# A fresh statement after the lock: it sees every lease committed before the lock was granted.
def _free(dialect: str) -> Any:
    agg = func.json_agg(C.c.id) if dialect == "postgresql" else func.json_group_array(C.c.id)
    ids = type_coerce(select(agg).where(C.c.task_id == T.c.id).scalar_subquery(), JSON)
    return select(
        (T.c.overlap - T.c.done_count - _LIVE_COUNT).label("free"), T.c.status, _MINE.label("mine"),
        _EXPIRED.label("expired"), ids.label("completion_ids"),
    ).where(T.c.id == bindparam("tid"))


FREE = {d: _free(d) for d in ("postgresql", "sqlite")}
EXPIRE = (
    update(A)
    .where(A.c.task_id == bindparam("tid"), A.c.status == LEASED, A.c.lease_expires_at <= _NOW)
    .values(status=AssignmentStatus.expired.value)
)
NEW_LEASE = insert(A).returning(A.c.id)
REVIVE = (
    update(A)
    .where(A.c.id == bindparam("aid"))
    .values(status=LEASED, leased_at=_NOW, lease_expires_at=bindparam("expires"),
            guideline_version_id=bindparam("gid"))
)


def held_or_gold(conn: Connection, uid: int, queue_id: int, now: datetime) -> tuple[int | None, bool]:
    """The user's live lease in the queue (to resume), and whether the queue serves gold items."""
    held, gold = conn.execute(HELD_OR_GOLD, {"uid": uid, "qid": queue_id, "now": now}).one()
    return held, bool(gold)


def lease_next(conn: Connection, uid: int, queue_id: int, now: datetime, lease_s: float) -> int | None:
    """Lease a slot of the queue's oldest eligible task, in a submit's transaction; the
    assignment id or None. It holds the submitted task's lock, so rows other transactions hold
    are skipped, never waited for (leasing.next_task with wait=False: no deadlock).

    Call it after held_or_gold found no live lease and no gold to serve.
    """
    tried: list[int] = []
    for _ in range(MAX_ATTEMPTS):
        params = {"uid": uid, "qid": queue_id, "now": now, "skip": tried}
        cand = conn.execute(CANDIDATE, params).first()
        if cand is None:
            return None
        task_id, guideline_id = cand
        params = {"tid": task_id, "uid": uid, "now": now}
        free = conn.execute(FREE[conn.dialect.name], params).mappings().one()
        if free["status"] == OPEN and free["free"] > 0:
            return _lease(conn, uid, task_id, guideline_id, free, now, lease_s)
        tried.append(task_id)
    return None


def _lease(
    conn: Connection, uid: int, task_id: int, guideline_id: int | None, free: RowMapping, now: datetime,
    lease_s: float,
) -> int:
    """Create (or revive the user's own expired) assignment on a locked task with a free slot."""
    expires = now + timedelta(seconds=lease_s)
    if free["expired"]:
        conn.execute(EXPIRE, {"tid": task_id, "now": now})  # bookkeeping, as leasing._lease
    if free["mine"] is not None:
        conn.execute(REVIVE, {"aid": free["mine"], "now": now, "expires": expires, "gid": guideline_id})
        return int(free["mine"])
    order = [int(cid) for cid in free["completion_ids"] or []]
    random.SystemRandom().shuffle(order)
    return int(conn.execute(NEW_LEASE, {
        "task_id": task_id, "user_id": uid, "display_order": order, "status": LEASED, "leased_at": now,
        "lease_expires_at": expires, "guideline_version_id": guideline_id, "draft_text": "",
        "skip_reason": "", "time_spent_ms": 0,
    }).scalar_one())
