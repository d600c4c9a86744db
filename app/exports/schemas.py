"""Validated input of the exports domain: the filters that choose what a batch holds."""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from app.enums import FLAGS, Split
from app.errors import AppError


class ExportFilters(BaseModel):
    """What goes into a batch. Empty lists mean 'all'; dates are inclusive UTC days."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    queues: list[int] = []
    since: date | None = None
    until: date | None = None
    labelers: list[int] = []
    exclude_flags: list[str] = []
    splits: list[Split] = []

    @field_validator("exclude_flags")
    @classmethod
    def _known_flags(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - FLAGS.keys())
        if unknown:
            raise ValueError(f"unknown flags: {', '.join(unknown)}")
        return value

    @model_validator(mode="after")
    def _ordered_dates(self) -> ExportFilters:
        if self.since and self.until and self.since > self.until:
            raise ValueError("'since' is after 'until'")
        return self

    def canonical(self) -> dict[str, Any]:
        """Sorted, de-duplicated, JSON-ready: equal filters give equal dicts (and hashes)."""
        return {
            "queues": sorted(set(self.queues)),
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "labelers": sorted(set(self.labelers)),
            "exclude_flags": sorted(set(self.exclude_flags)),
            "splits": sorted({s.value for s in self.splits}),
        }


def parse_filters(data: dict[str, Any]) -> ExportFilters:
    """Validate filters from a form or the CLI; a bad value is one clear AppError."""
    try:
        return ExportFilters.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ())) or "filters"
        raise AppError(f"{where}: {str(err.get('msg', 'invalid')).removeprefix('Value error, ')}") from None
