"""Queues, guideline versions, progress, prompt imports, the ingestion API and PII review.

Services add and flush; the request or CLI wrapper commits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import IO, Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from app.auth.models import ApiToken, User
from app.config import Settings
from app.db import utcnow
from app.enums import K_MAX, K_MIN, AssignmentStatus, PIIStatus, TaskKind, TaskStatus
from app.errors import AppError, Conflict, NotFound
from app.labeling.models import Assignment, Task
from app.prompts.importer import Importer, RawRow, Screening, rows_for, screen_rows
from app.prompts.models import GuidelineVersion, Prompt, PromptImport, PromptQueue

WRITE_HINTS = ("plain", "few_shot", "use_case")
MAX_API_PROMPTS = 5000


class QueueForm(BaseModel):
    """A queue's editable settings, validated."""

    name: str = Field(min_length=1, max_length=128)
    kind: TaskKind
    k: int = Field(default=4, ge=K_MIN, le=K_MAX)
    overlap: int = Field(default=1, ge=1, le=50)
    priority: int = Field(default=0, ge=-1000, le=1000)
    gold_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    low_water: int = Field(default=20, ge=0, le=100_000)
    allow_edits: bool = False
    task_order: Literal["oldest", "uncertainty"] = "oldest"
    guidelines: str = Field(default="", max_length=100_000)

    @field_validator("name")
    @classmethod
    def _strip(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be blank")
        return value


def parse_queue_form(data: dict[str, Any]) -> QueueForm:
    """Validate submitted queue fields; a bad field is one clear AppError naming it."""
    cleaned = {k: v for k, v in data.items() if k in QueueForm.model_fields and v not in (None, "")}
    try:
        return QueueForm.model_validate(cleaned)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ())) or "input"
        raise AppError(f"{where}: {err.get('msg', 'invalid')}") from None


def list_queues(db: Session) -> list[PromptQueue]:
    """All queues, highest priority first."""
    return list(db.scalars(select(PromptQueue).order_by(PromptQueue.priority.desc(), PromptQueue.name)))


def get_queue(db: Session, queue_id: int) -> PromptQueue:
    """A queue by id, or NotFound."""
    queue = db.get(PromptQueue, queue_id)
    if queue is None:
        raise NotFound("There is no such queue.")
    return queue


def find_queue(db: Session, ref: str) -> PromptQueue:
    """A queue by id or exact name (the CLI's --queue)."""
    if "\x00" in ref or len(ref) > 128:
        raise NotFound(f"There is no queue {ref[:40]!r}.")
    # Ids beyond the integer range are names (the database would refuse them as ids).
    queue = db.get(PromptQueue, int(ref)) if ref.isdigit() and len(ref) < 10 else None
    queue = queue or db.scalar(select(PromptQueue).where(PromptQueue.name == ref))
    if queue is None:
        raise NotFound(f"There is no queue {ref!r}.")
    return queue


def current_guideline(queue: PromptQueue) -> GuidelineVersion | None:
    """The newest guideline version of a queue (labels record its id)."""
    return queue.guidelines[-1] if queue.guidelines else None


def create_queue(db: Session, data: dict[str, Any], admin: User | None) -> PromptQueue:
    """Create a queue with version 1 of its guidelines."""
    form = parse_queue_form(data)
    if db.scalar(select(PromptQueue.id).where(PromptQueue.name == form.name)) is not None:
        raise Conflict(f"A queue named {form.name!r} already exists.")
    queue = PromptQueue(
        name=form.name,
        kind=form.kind.value,
        k=form.k,
        overlap=form.overlap,
        priority=form.priority,
        gold_rate=form.gold_rate,
        low_water=form.low_water,
        allow_edits=form.allow_edits,
        task_order=form.task_order,
    )
    queue.guidelines = [
        GuidelineVersion(version=1, body_md=form.guidelines, created_by_id=admin.id if admin else None)
    ]
    db.add(queue)
    db.flush()
    return queue


def update_queue(db: Session, queue_id: int, data: dict[str, Any], admin: User | None) -> PromptQueue:
    """Change a queue's settings; changed guidelines become a new version."""
    queue = get_queue(db, queue_id)
    form = parse_queue_form(data)
    clash = db.scalar(select(PromptQueue.id).where(PromptQueue.name == form.name, PromptQueue.id != queue.id))
    if clash is not None:
        raise Conflict(f"A queue named {form.name!r} already exists.")
    if form.kind.value != queue.kind and db.scalar(select(Task.id).where(Task.queue_id == queue.id).limit(1)):
        raise Conflict("This queue already has tasks; its kind can no longer change.")
    queue.name, queue.kind, queue.k, queue.overlap = form.name, form.kind.value, form.k, form.overlap
    queue.priority, queue.gold_rate, queue.low_water = form.priority, form.gold_rate, form.low_water
    queue.allow_edits, queue.task_order = form.allow_edits, form.task_order
    current = current_guideline(queue)
    if current is None or current.body_md != form.guidelines:
        version = (current.version + 1) if current else 1
        queue.guidelines.append(
            GuidelineVersion(
                version=version, body_md=form.guidelines, created_by_id=admin.id if admin else None
            )
        )
    db.flush()
    return queue


def set_paused(db: Session, queue_id: int, paused: bool) -> PromptQueue:
    """Pause (no new leases) or resume a queue."""
    queue = get_queue(db, queue_id)
    queue.is_paused = paused
    db.flush()
    return queue


def get_guideline(db: Session, queue_id: int, version: int) -> GuidelineVersion:
    """One version of a queue's guidelines."""
    found = db.scalar(
        select(GuidelineVersion).where(
            GuidelineVersion.queue_id == queue_id, GuidelineVersion.version == version
        )
    )
    if found is None:
        raise NotFound("There is no such guideline version.")
    return found


def add_write_tasks(db: Session, queue_id: int, count: int, hint: str) -> int:
    """Add `count` write-a-prompt tasks with a hint (plain, few_shot, use_case) to a write-prompt queue."""
    queue = get_queue(db, queue_id)
    if queue.kind != TaskKind.write_prompt.value:
        raise AppError("Only write-prompt queues take write-prompt tasks.")
    if hint not in WRITE_HINTS:
        raise AppError(f"The hint must be one of {', '.join(WRITE_HINTS)}.")
    if not 1 <= count <= 10_000:
        raise AppError("Add between 1 and 10000 tasks at a time.")
    db.execute(
        insert(Task),
        [
            {
                "queue_id": queue.id,
                "kind": queue.kind,
                "hint": hint,
                "overlap": queue.overlap,
                "status": TaskStatus.open.value,
            }
            for _ in range(count)
        ],
    )
    db.flush()
    return count


@dataclass
class QueueProgress:
    """What a queue page shows: counts, rate and who is working."""

    waiting: int = 0
    in_progress: int = 0
    done: int = 0
    prompts_held: int = 0
    prompts_without_task: int = 0
    labels_last_hour: int = 0
    labels_per_hour_24h: float = 0.0
    working: list[str] = field(default_factory=list)


def queue_progress(db: Session, queue: PromptQueue, now: datetime | None = None) -> QueueProgress:
    """Items waiting / in progress / done, labels per hour and who holds leases right now."""
    now = now or utcnow()
    out = QueueProgress()
    live = (Assignment.status == AssignmentStatus.leased.value) & (Assignment.lease_expires_at > now)
    leased_tasks = (
        select(Assignment.task_id)
        .join(Task, Task.id == Assignment.task_id)
        .where(Task.queue_id == queue.id, live)
    )
    out.in_progress = (
        db.scalar(
            select(func.count())
            .select_from(Task)
            .where(Task.queue_id == queue.id, Task.status == TaskStatus.open.value, Task.id.in_(leased_tasks))
        )
        or 0
    )
    by_status: dict[str, int] = {
        status: n
        for status, n in db.execute(
            select(Task.status, func.count()).where(Task.queue_id == queue.id).group_by(Task.status)
        )
    }
    out.waiting = by_status.get(TaskStatus.open.value, 0) - out.in_progress
    out.done = by_status.get(TaskStatus.done.value, 0)
    out.prompts_held = (
        db.scalar(
            select(func.count())
            .select_from(Prompt)
            .where(Prompt.queue_id == queue.id, Prompt.pii_status == PIIStatus.held.value)
        )
        or 0
    )
    out.prompts_without_task = (
        db.scalar(
            select(func.count())
            .select_from(Prompt)
            .where(
                Prompt.queue_id == queue.id,
                Prompt.pii_status.in_([PIIStatus.clear.value, PIIStatus.redacted.value]),
                # NOT EXISTS, not NOT IN: an anti-join on tasks.prompt_id on both databases.
                ~select(Task.id).where(Task.prompt_id == Prompt.id, Task.queue_id == queue.id).exists(),
            )
        )
        or 0
    )
    # Driven by the (status, finished_at) index: the cost follows the recent labels, not all of them.
    in_queue = select(Task.id).where(Task.id == Assignment.task_id, Task.queue_id == queue.id).exists()
    submitted = (
        select(func.count())
        .select_from(Assignment)
        .where(Assignment.status == AssignmentStatus.submitted.value, in_queue)
    )
    out.labels_last_hour = db.scalar(submitted.where(Assignment.finished_at >= now - timedelta(hours=1))) or 0
    day = db.scalar(submitted.where(Assignment.finished_at >= now - timedelta(hours=24))) or 0
    out.labels_per_hour_24h = round(day / 24, 2)
    out.working = list(
        db.scalars(
            select(User.username)
            .distinct()
            .join(Assignment, Assignment.user_id == User.id)
            .join(Task, Task.id == Assignment.task_id)
            .where(Task.queue_id == queue.id, live)
            .order_by(User.username)
        )
    )
    return out


def import_file(
    db: Session,
    settings: Settings,
    queue_id: int,
    filename: str,
    stream: IO[bytes],
    mode: str,
    admin: User | None,
    size: int | None = None,
    screening: Screening | None = None,
) -> PromptImport:
    """Import a JSONL or CSV file into a queue, streaming; returns the import with its report.

    `screening` holds the rows' personal-data findings, computed before the caller's transaction
    (importer.screen_upload); without it rows are screened inside it."""
    queue = get_queue(db, queue_id)
    if size is not None and size > settings.max_upload_bytes:
        raise AppError(f"The file is larger than the {settings.max_upload_bytes // (1024 * 1024)} MiB limit.")
    rows = rows_for(filename or "upload", stream)
    return Importer(
        db, settings, queue, mode, filename=filename, created_by=admin, screening=screening
    ).run(rows)


def screen_ingest(payload: Any, settings: Settings) -> Screening:
    """The personal-data findings of an ingestion body's prompts; needs no database, so the API
    runs it before its transaction (an odd body gives an empty screening: ingest refuses it)."""
    items = payload.get("prompts") if isinstance(payload, dict) else None
    if not isinstance(items, list) or len(items) > MAX_API_PROMPTS:
        return Screening()
    return screen_rows((RawRow(i, data=item) for i, item in enumerate(items, 1)), settings.max_text_chars)


def ingest(
    db: Session, settings: Settings, token: ApiToken, payload: dict[str, Any],
    screening: Screening | None = None,
) -> PromptImport:
    """The ingestion API: {"queue": id|name, "mode": ..., "prompts": [{prompt | messages, user_id, meta}]}.

    `screening` (screen_ingest) is computed before the transaction; without it, inside it."""
    if not isinstance(payload, dict):
        raise AppError("The body must be a JSON object with 'queue' and 'prompts'.")
    ref, items = payload.get("queue"), payload.get("prompts")
    if isinstance(ref, bool) or not isinstance(ref, int | str) or ref == "":
        raise AppError("'queue' must be a queue id or name.")
    if not isinstance(items, list) or not items:
        raise AppError("'prompts' must be a non-empty list.")
    if len(items) > MAX_API_PROMPTS:
        raise AppError(f"Send at most {MAX_API_PROMPTS} prompts per request.")
    mode = payload.get("mode", "valid_rows")
    if not isinstance(mode, str):
        raise AppError("'mode' must be 'valid_rows' or 'all_or_nothing'.")
    queue = find_queue(db, str(ref))
    rows = (RawRow(i, data=item) for i, item in enumerate(items, 1))
    return Importer(
        db, settings, queue, mode, source="api", filename=f"api:{token.name}", api_token=token,
        screening=screening,
    ).run(rows)


def get_import(db: Session, import_id: int) -> PromptImport:
    """An import record with its report."""
    imp = db.get(PromptImport, import_id)
    if imp is None:
        raise NotFound("There is no such import.")
    return imp


def recent_imports(db: Session, queue_id: int | None = None, limit: int = 20) -> list[PromptImport]:
    """The latest imports, optionally of one queue."""
    q = select(PromptImport).order_by(PromptImport.id.desc()).limit(limit)
    if queue_id is not None:
        q = q.where(PromptImport.queue_id == queue_id)
    return list(db.scalars(q))


def queue_overview(db: Session, queue_id: int) -> dict[str, Any]:
    """Everything the queue page shows: settings, progress, agreement, guideline versions, imports."""
    from app.active.service import lease_order
    from app.quality.counters import queue_agreement

    queue = get_queue(db, queue_id)
    total, per_user = queue_agreement(db, queue.id)
    names = (
        dict(db.execute(select(User.id, User.username).where(User.id.in_(per_user))).all())
        if per_user
        else {}
    )
    return {
        "queue": queue,
        "progress": queue_progress(db, queue),
        "agreement": total,
        "labeler_agreement": sorted(
            ((names.get(u, str(u)), a) for u, a in per_user.items()), key=lambda x: x[0]
        ),
        "guideline": current_guideline(queue),
        "imports": recent_imports(db, queue.id, limit=10),
        "write_hints": WRITE_HINTS,
        "lease_order": lease_order(db, queue) if queue.kind == TaskKind.ranking.value else [],
    }


def queues_with_progress(db: Session) -> list[tuple[PromptQueue, QueueProgress]]:
    """Every queue with its progress, for the list and the console home."""
    return [(q, queue_progress(db, q)) for q in list_queues(db)]


def queue_form_context(
    queue: PromptQueue | None, values: dict[str, Any] | None = None, error: str | None = None
) -> dict[str, Any]:
    """What the queue form shows: submitted values (after an error), else the queue's, else defaults."""
    guideline = current_guideline(queue) if queue else None
    fields: dict[str, Any] = {
        "name": "",
        "kind": TaskKind.demonstration.value,
        "k": 4,
        "overlap": 1,
        "priority": 0,
        "gold_rate": 0.0,
        "low_water": 20,
        "allow_edits": False,
        "task_order": "oldest",
        "guidelines": "",
    }
    if queue is not None:
        fields.update(
            {
                k: getattr(queue, k)
                for k in (
                    "name", "kind", "k", "overlap", "priority", "gold_rate", "low_water",
                    "allow_edits", "task_order",
                )
            }
        )
        fields["guidelines"] = guideline.body_md if guideline else ""
    if values:
        fields.update({k: str(v) for k, v in values.items() if k in fields})
        fields["allow_edits"] = str(values.get("allow_edits", "")) in {"1", "on", "true"}
    return {
        "queue": queue,
        "f": fields,
        "error": error,
        "kinds": list(TaskKind),
        "k_min": K_MIN,
        "k_max": K_MAX,
    }
