"""Streaming prompt import: JSONL/CSV readers that report by line, and the batch importer.

Rows flow through in batches of BATCH_ROWS: memory holds one batch plus the dedup keys and
per-user counts seen so far, never the file. The whole import runs inside a savepoint so
"all or nothing" can take nothing, after reading the whole file to list every rejected row.

Personal-data screening runs in a first pass over the rows (`screen_rows`, `screen_upload`)
before the caller opens its transaction: on SQLite the first statement takes the write lock,
and screening a large upload must never hold it. The write pass looks the findings up.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from sqlalchemy import func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.auth.models import ApiToken, User
from app.config import Settings
from app.enums import PIIStatus, TaskKind
from app.errors import AppError
from app.prompts import conversation, pii, rules
from app.prompts.models import Prompt, PromptImport, PromptQueue

BATCH_ROWS = 1000
MAX_REPORT = 1000
MODES = ("valid_rows", "all_or_nothing")


@dataclass
class RawRow:
    """One row as read: its 1-based line number, the parsed object, or why it could not be read."""

    line: int
    data: Any = None
    error: str | None = None


def _decoded_lines(stream: IO[bytes], bad: set[int]) -> Iterator[str]:
    """Decode line by line; lines that are not UTF-8 are noted in `bad` and decoded with U+FFFD."""
    for lineno, raw in enumerate(stream, 1):
        if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError:
            bad.add(lineno)
            yield raw.decode("utf-8", errors="replace")


def read_jsonl(stream: IO[bytes]) -> Iterator[RawRow]:
    """Rows of a JSON Lines file; blank lines are skipped."""
    bad: set[int] = set()
    for lineno, line in enumerate(_decoded_lines(stream, bad), 1):
        if lineno in bad:
            yield RawRow(lineno, error="not valid UTF-8")
            continue
        if not line.strip():
            continue
        try:
            yield RawRow(lineno, data=json.loads(line.rstrip("\r\n")))
        except json.JSONDecodeError as exc:
            yield RawRow(
                lineno, error=f"not valid JSON ({exc.msg.removesuffix(' at')} at column {exc.colno})"
            )
        except RecursionError:
            yield RawRow(lineno, error="not valid JSON (nested too deeply)")


def read_csv(stream: IO[bytes]) -> Iterator[RawRow]:
    """Rows of a CSV file with a header naming a 'prompt' (or 'text') column."""
    bad: set[int] = set()
    reader = csv.reader(_decoded_lines(stream, bad), strict=True)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        return
    except csv.Error as exc:
        raise AppError(f"The CSV header on line 1 cannot be read: {exc}.") from None
    if not any(k in header for k in rules.PROMPT_KEYS):
        raise AppError("The CSV header has no 'prompt' column (the first line must name the columns).")
    end = reader.line_num
    while True:
        start = end + 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            end = reader.line_num
            yield RawRow(start, error=f"not valid CSV ({exc})")
            continue
        end = reader.line_num
        if any(n in bad for n in range(start, end + 1)):
            yield RawRow(start, error="not valid UTF-8")
        elif not record or all(not cell.strip() for cell in record):
            continue
        elif len(record) != len(header):
            yield RawRow(start, error=f"expected {len(header)} fields, found {len(record)}")
        else:
            yield RawRow(start, data=_csv_object(header, record))


def _csv_object(header: list[str], record: list[str]) -> dict[str, Any]:
    known = set(rules.PROMPT_KEYS) | set(rules.USER_KEYS)
    data: dict[str, Any] = {h: v for h, v in zip(header, record, strict=True) if h in known}
    extra = {h: v for h, v in zip(header, record, strict=True) if h not in known and h}
    if extra:
        data["meta"] = extra
    return data


def rows_for(filename: str, stream: IO[bytes]) -> Iterator[RawRow]:
    """The reader for a file by its extension (.jsonl/.ndjson/.json or .csv)."""
    name = filename.lower()
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return read_jsonl(stream)
    if name.endswith(".csv"):
        return read_csv(stream)
    raise AppError("Import files must be JSON Lines (.jsonl) or CSV (.csv).")


def _insert_for(db: Session) -> Any:
    """The dialect's INSERT (both have ON CONFLICT ... DO NOTHING)."""
    return postgresql.insert if db.get_bind().dialect.name == "postgresql" else sqlite.insert


class Screening:
    """Personal-data findings of an upload's rows, computed before any database work.

    Keyed by a digest of each cleaned text (memory: a few dozen bytes a row, never the texts);
    a text the first pass never saw is screened when it is looked up.
    """

    def __init__(self) -> None:
        self._clear: set[bytes] = set()
        self._found: dict[bytes, list[dict[str, Any]]] = {}

    @staticmethod
    def _key(text: str) -> bytes:
        return hashlib.sha256(text.encode()).digest()[:16]

    def screen(self, text: str) -> list[dict[str, Any]]:
        """Screen `text` (once per distinct text) and remember its findings."""
        key = self._key(text)
        if key in self._clear:
            return []
        found = self._found.get(key)
        if found is None:
            found = [f.as_dict() for f in pii.detect(text)]
            if found:
                self._found[key] = found
            else:
                self._clear.add(key)
        return found

    def screen_row(self, row: rules.CleanRow) -> list[dict[str, Any]]:
        """A cleaned row's findings: its text, or every message of a conversation (positions in
        the transcript, with the message index)."""
        if row.messages is None:
            return self.screen(row.text)
        key = self._key("\x00conversation\x00" + row.text)
        if key in self._clear:
            return []
        found = self._found.get(key)
        if found is None:
            found = conversation.screen(row.messages)
            if found:
                self._found[key] = found
            else:
                self._clear.add(key)
        return found

    def __len__(self) -> int:
        return len(self._clear) + len(self._found)


def screen_rows(rows: Iterable[RawRow], max_chars: int) -> Screening:
    """Screen every importable row for personal data; needs no database (run it before any lock)."""
    screening = Screening()
    for raw in rows:
        if raw.error is not None:
            continue
        try:
            row = rules.clean_row(raw.data, max_chars)
        except rules.RowError:
            continue
        screening.screen_row(row)
    return screening


def screen_upload(filename: str, stream: IO[bytes], max_chars: int) -> Screening:
    """Screen an uploaded file's rows, then rewind it for the import; a file that cannot be read
    gives an empty screening (the import itself reports why)."""
    try:
        return screen_rows(rows_for(filename or "upload", stream), max_chars)
    except AppError:
        return Screening()
    finally:
        stream.seek(0)


@dataclass
class _Pending:
    line: int
    row: rules.CleanRow
    key: str
    findings: list[dict[str, Any]]


class Importer:
    """Validate, deduplicate, cap, split and PII-check rows, writing them in batches."""

    def __init__(
        self,
        db: Session,
        settings: Settings,
        queue: PromptQueue,
        mode: str,
        *,
        source: str = "import",
        filename: str = "",
        created_by: User | None = None,
        api_token: ApiToken | None = None,
        screening: Screening | None = None,
    ) -> None:
        if mode not in MODES:
            raise AppError("The import mode must be 'valid_rows' or 'all_or_nothing'.")
        if queue.kind == TaskKind.write_prompt.value:
            raise AppError(
                "This queue asks labelers to write prompts; import into a demonstration or ranking queue."
            )
        self.db, self.settings, self.queue, self.mode, self.source = db, settings, queue, mode, source
        self.imp = PromptImport(
            queue_id=queue.id,
            filename=filename[:256],
            mode=mode,
            status="running",
            accepted=0,
            rejected=0,
            duplicates=0,
            capped=0,
            held_for_pii=0,
            created_by_id=created_by.id if created_by else None,
            api_token_id=api_token.id if api_token else None,
            report=[],
        )
        self._report: list[dict[str, Any]] = []
        self._seen: set[bytes] = set()
        self._user_counts: dict[str, int] = {}
        self._locked: set[str] = set()
        self._batch: list[_Pending] = []
        # Callers screen before their transaction; without a screening, rows are screened here.
        self.screening = screening if screening is not None else Screening()

    def _note(self, line: int, kind: str, reason: str) -> None:
        if len(self._report) < MAX_REPORT:
            self._report.append({"line": line, "kind": kind, "reason": reason})

    def run(self, rows: Iterable[RawRow]) -> PromptImport:
        """Import every row; returns the PromptImport with counts and the report (flushed)."""
        self.db.add(self.imp)
        self.db.flush()
        savepoint = self.db.begin_nested()
        try:
            for raw in rows:
                self._take(raw)
                if len(self._batch) >= BATCH_ROWS:
                    self._flush_batch()
            self._flush_batch()
        except BaseException:
            savepoint.rollback()
            raise
        counts = {
            k: getattr(self.imp, k) for k in ("accepted", "rejected", "duplicates", "capped", "held_for_pii")
        }
        if self.mode == "all_or_nothing" and counts["rejected"] > 0:
            # Rolling back expires what changed inside the savepoint; the counts were read first.
            savepoint.rollback()
            counts["accepted"] = counts["held_for_pii"] = 0
            status = "failed"
        else:
            savepoint.commit()
            status = "done"
        for key, value in counts.items():
            setattr(self.imp, key, value)
        self.imp.status, self.imp.report = status, sorted(self._report, key=lambda r: int(r["line"]))
        self.db.flush()
        return self.imp

    def _take(self, raw: RawRow) -> None:
        if raw.error is not None:
            self._reject(raw.line, raw.error)
            return
        try:
            row = rules.clean_row(raw.data, self.settings.max_text_chars)
        except rules.RowError as exc:
            self._reject(raw.line, str(exc))
            return
        if row.messages is not None:
            key = conversation.dedup_key(row.messages)
        else:
            key = rules.dedup_key(row.text, self.settings.prompt_dedup_prefix_chars)
        # Looked up in the caller's screening (made before its transaction); a row it never saw
        # is screened here, before its batch takes the per-user locks and writes.
        self._batch.append(_Pending(raw.line, row, key, self.screening.screen_row(row)))

    def _reject(self, line: int, reason: str) -> None:
        self.imp.rejected += 1
        self._note(line, "rejected", reason)

    def _flush_batch(self) -> None:
        batch, self._batch = self._batch, []
        if not batch:
            return
        keys = {p.key for p in batch}
        existing = set(self.db.scalars(select(Prompt.dedup_key).where(Prompt.dedup_key.in_(keys))))
        users = {p.row.external_user_id for p in batch if p.row.external_user_id}
        self._lock_users(users)
        self._load_user_counts(users)
        pending = [(p, v) for p in batch if (v := self._accept(p, existing)) is not None]
        if not pending or (self.mode == "all_or_nothing" and self.imp.rejected):
            return
        # The unique key decides between concurrent imports: a row another transaction stored
        # after `existing` was read is skipped here, not stored twice.
        stmt = _insert_for(self.db)(Prompt).on_conflict_do_nothing(
            index_elements=["dedup_key"], index_where=text("dedup_key <> ''")
        ).returning(Prompt.id, Prompt.pii_status, Prompt.dedup_key)
        result = list(self.db.execute(stmt, [v for _, v in pending]))
        stored = {key for _, _, key in result}
        for p, v in pending:
            if v["dedup_key"] not in stored:
                self._lost_to_another_import(p, v)
        clear = [pid for pid, status, _ in result if status == PIIStatus.clear.value]
        from app.labeling.service import create_tasks

        create_tasks(self.db, self.queue, clear)

    def _lock_users(self, user_ids: set[str]) -> None:
        """Serialise imports per external user until commit, so the per-user cap is counted on
        committed rows (PostgreSQL; SQLite serialises every writer already)."""
        if self.db.get_bind().dialect.name != "postgresql":
            return
        for user in sorted(user_ids - self._locked):  # one order everywhere: no deadlocks
            self.db.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
                            {"k": f"prompt-user:{user}"})
            self._locked.add(user)

    def _lost_to_another_import(self, p: _Pending, values: dict[str, Any]) -> None:
        self.imp.accepted -= 1
        self.imp.duplicates += 1
        self.imp.held_for_pii -= values["pii_status"] == PIIStatus.held.value
        user = p.row.external_user_id
        if user is not None:
            self._user_counts[user] -= 1
        self._note(p.line, "duplicate", "another import stored the same prompt first")

    def _load_user_counts(self, user_ids: set[str]) -> None:
        missing = [u for u in user_ids if u not in self._user_counts]
        if not missing:
            return
        self._user_counts.update({u: 0 for u in missing})
        counts = self.db.execute(
            select(Prompt.external_user_id, func.count())
            .where(Prompt.external_user_id.in_(missing), Prompt.pii_status != PIIStatus.rejected.value)
            .group_by(Prompt.external_user_id)
        )
        for user_id, n in counts:
            self._user_counts[str(user_id)] = int(n)

    def _accept(self, p: _Pending, existing: set[str]) -> dict[str, Any] | None:
        digest = hashlib.sha256(p.key.encode()).digest()[:16]
        if p.key in existing or digest in self._seen:
            self.imp.duplicates += 1
            self._note(
                p.line,
                "duplicate",
                "repeats an earlier conversation" if p.row.messages is not None else "shares its first "
                f"{self.settings.prompt_dedup_prefix_chars} characters with an earlier prompt",
            )
            return None
        user = p.row.external_user_id
        if user is not None and self._user_counts.get(user, 0) >= self.settings.prompt_max_per_user:
            self.imp.capped += 1
            self._note(
                p.line, "capped", f"user {user!r} already has {self.settings.prompt_max_per_user} prompts"
            )
            return None
        self._seen.add(digest)
        if user is not None:
            self._user_counts[user] = self._user_counts.get(user, 0) + 1
        findings = p.findings
        self.imp.accepted += 1
        self.imp.held_for_pii += bool(findings)
        split = rules.split_for(
            rules.split_key(user, p.key),
            self.settings.split_valid_fraction,
            self.settings.split_test_fraction,
        )
        return {
            "queue_id": self.queue.id,
            "text": p.row.text,
            "messages": p.row.messages,
            "source": self.source,
            "external_user_id": user,
            "split": split.value,
            "pii_status": (PIIStatus.held if findings else PIIStatus.clear).value,
            "pii_findings": findings,
            "dedup_key": p.key,
            "import_id": self.imp.id,
            "meta": {**p.row.meta, "line": p.line},
        }
