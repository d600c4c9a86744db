"""The export file contract: one JSONL file and one Parquet twin per dataset, fixed schemas.

Training reads these (training/ never imports app): keep names, fields and types stable.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

S, I64, B = pa.string(), pa.int64(), pa.bool_()
# A conversation's turns; null on rows whose prompt is plain text (their "prompt" is null otherwise).
MESSAGES = pa.list_(pa.struct([("role", S), ("content", S)]))

_COMMON = [
    ("labeler", S),
    ("labeler_id", I64),
    ("prompt_id", I64),
    ("task_id", I64),
    ("queue_id", I64),
    ("guideline_version", I64),
    ("created_at", S),
]

SCHEMAS: dict[str, pa.Schema] = {
    "sft": pa.schema(
        [
            ("prompt", S),
            ("messages", MESSAGES),
            ("completion", S),
            ("split", S),
            # Edit rows (a labeler's fix of a ranking's best completion) have edit_id, no demonstration_id.
            (
                "provenance",
                pa.struct([("demonstration_id", I64), *_COMMON, ("time_spent_ms", I64), ("edit_id", I64)]),
            ),
        ]
    ),
    "pairwise": pa.schema(
        [
            ("prompt", S),
            ("messages", MESSAGES),
            ("chosen", S),
            ("rejected", S),
            ("split", S),
            (
                "provenance",
                pa.struct(
                    [
                        ("ranking_id", I64),
                        *_COMMON,
                        ("chosen_completion_id", I64),
                        ("rejected_completion_id", I64),
                        ("chosen_policy_version", I64),
                        ("rejected_policy_version", I64),
                        ("chosen_rank", I64),
                        ("rejected_rank", I64),
                        # True for the pair an edit makes (edited text chosen over the original).
                        ("from_edit", B),
                        ("edit_id", I64),
                    ]
                ),
            ),
        ]
    ),
    "rankings": pa.schema(
        [
            ("prompt", S),
            ("messages", MESSAGES),
            ("completions", pa.list_(S)),
            ("ranks", pa.list_(I64)),
            ("split", S),
            (
                "provenance",
                pa.struct(
                    [
                        ("ranking_id", I64),
                        *_COMMON,
                        ("completion_ids", pa.list_(I64)),
                        ("policy_versions", pa.list_(I64)),
                        ("likert", pa.list_(I64)),
                        ("flags", pa.list_(pa.list_(S))),
                        ("all_unacceptable", B),
                        ("time_spent_ms", I64),
                    ]
                ),
            ),
        ]
    ),
    "prompts": pa.schema(
        [
            ("prompt", S),
            ("messages", MESSAGES),
            ("split", S),
            (
                "provenance",
                pa.struct(
                    [
                        ("prompt_id", I64),
                        ("queue_id", I64),
                        ("source", S),
                        ("pii_status", S),
                        ("created_at", S),
                    ]
                ),
            ),
        ]
    ),
}
DATASETS = tuple(SCHEMAS)
CHUNK_ROWS = 1000


class DatasetWriter:
    """Writes one dataset's rows to `<name>.jsonl` and `<name>.parquet`, streaming in chunks."""

    def __init__(self, directory: Path, name: str) -> None:
        self.name, self.count = name, 0
        self.schema = SCHEMAS[name]
        self._jsonl = (directory / f"{name}.jsonl").open("w", encoding="utf-8", newline="\n")
        self._parquet = pq.ParquetWriter(directory / f"{name}.parquet", self.schema, compression="zstd")
        self._chunk: list[dict[str, Any]] = []

    def write(self, row: dict[str, Any]) -> None:
        """Append one row (keys in schema order)."""
        self._jsonl.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
        self._chunk.append(row)
        self.count += 1
        if len(self._chunk) >= CHUNK_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._chunk:
            self._parquet.write_table(pa.Table.from_pylist(self._chunk, schema=self.schema))
            self._chunk = []

    def close(self) -> None:
        """Finish both files (an empty dataset still gets both, with the schema)."""
        self._flush()
        self._jsonl.close()
        self._parquet.close()
