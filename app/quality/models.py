"""Agreement counters kept per queue and per (queue, labeler), updated with each stored ranking."""

from __future__ import annotations

from sqlalchemy import Float, ForeignKey, Integer
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base


class QueueAgreement(Base):
    """A queue's running agreement sums: overlapped items, shared comparisons, tau sum and count."""

    __tablename__ = "queue_agreement"

    queue_id: Mapped[int] = mapped_column(
        ForeignKey("prompt_queues.id", ondelete="CASCADE"), primary_key=True
    )
    items: Mapped[int] = mapped_column(Integer, default=0)
    agree: Mapped[int] = mapped_column(Integer, default=0)
    compared: Mapped[int] = mapped_column(Integer, default=0)
    tau_sum: Mapped[float] = mapped_column(Float, default=0.0)
    tau_n: Mapped[int] = mapped_column(Integer, default=0)


class LabelerAgreement(Base):
    """One labeler's running sums within one queue: labels stored (rankings and demonstrations)
    and the agreement sums."""

    __tablename__ = "labeler_agreement"

    queue_id: Mapped[int] = mapped_column(
        ForeignKey("prompt_queues.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    labels: Mapped[int] = mapped_column(Integer, default=0)
    items: Mapped[int] = mapped_column(Integer, default=0)
    agree: Mapped[int] = mapped_column(Integer, default=0)
    compared: Mapped[int] = mapped_column(Integer, default=0)
    tau_sum: Mapped[float] = mapped_column(Float, default=0.0)
    tau_n: Mapped[int] = mapped_column(Integer, default=0)
