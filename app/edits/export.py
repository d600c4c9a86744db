"""Export rows of labelers' edits (contract: app/exports/formats.py, read by training.data).

Each edit gives an SFT row (the prompt and the edited text) and a pairwise row with the edited
text chosen over the original; both carry `edit_id`, and the pair `from_edit: true`, so the
trainers can weight or leave out edit pairs (RewardConfig / DPOConfig `edit_pair_weight`).
The export's filters (queues, labelers, dates, splits, exportable prompts) apply as to rankings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from app.edits.models import CompletionEdit
from app.exports.schemas import ExportFilters
from app.rankings.models import Completion

Row = dict[str, Any]


def edit_rows(
    db: Session,
    filters: ExportFilters,
    label_query: Callable[[Any, ExportFilters], Select],
    common: Callable[..., Row],
) -> Iterator[tuple[Row, Row]]:
    """(SFT row, pairwise row) per edit, by edit id; `label_query`/`common` are the export's own."""
    from app.exports.service import prompt_fields, sft_fields  # the service imports this module

    edits = list(db.execute(label_query(CompletionEdit, filters)))
    originals = {
        c.id: c
        for c in db.scalars(select(Completion).where(Completion.id.in_([r[0].completion_id for r in edits])))
    }
    for edit, prompt, username, queue_id, version in edits:
        original = originals.get(edit.completion_id)
        if original is None:
            continue
        base = common(edit, prompt, username, queue_id, version)
        sft = {
            **sft_fields(prompt, edit.text),
            "split": prompt.split,
            "provenance": {
                "demonstration_id": None, **base, "time_spent_ms": edit.time_spent_ms, "edit_id": edit.id
            },
        }
        pair = {
            **prompt_fields(prompt),
            "chosen": edit.text,
            "rejected": original.text,
            "split": prompt.split,
            "provenance": {
                "ranking_id": edit.ranking_id,
                **base,
                "chosen_completion_id": None,
                "rejected_completion_id": original.id,
                "chosen_policy_version": None,
                "rejected_policy_version": original.policy_version_id,
                "chosen_rank": None,
                "rejected_rank": None,
                "from_edit": True,
                "edit_id": edit.id,
            },
        }
        yield sft, pair
