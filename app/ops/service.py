"""What the ops console shows: runs, one run live, versions with win-rates, workers; and its actions."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.models import User
from app.config import Settings
from app.db import utcnow
from app.enums import ModelKind, RunStatus
from app.errors import AppError
from app.exports.models import ExportBatch
from app.ops import charts
from app.ops import evaluation as evaluation_view
from app.ops.forms import FormError, RoundForm, methods_json, presets_json, to_request
from app.policies import service as registry
from app.policies.models import Deployment, ModelVersion
from app.prompts.models import PromptQueue
from app.runs import pages as run_pages
from app.runs import service as runs
from app.runs import stages as stage_defs
from app.runs.gate import gate_decision
from app.runs.models import RunLog, RunStage, TrainingRun
from app.system import service as system

LIVE = frozenset(runs.LIVE)


def human_seconds(seconds: float | None) -> str:
    """A duration for people: '45 s', '3 min 5 s', '2 h 10 min'."""
    if seconds is None:
        return ""
    s = round(max(0.0, seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {(s % 3600) // 60} min"


def _aware(at: datetime | None) -> datetime | None:
    if at is None:
        return None
    return at if at.tzinfo else at.replace(tzinfo=utcnow().tzinfo)


def _gate_reached(run: TrainingRun) -> datetime | None:
    """When the last stage (the evaluation) finished: from then on a round only waits at the gate."""
    ends = [_aware(s.finished_at) for s in run.stages if s.finished_at is not None]
    return max((e for e in ends if e is not None), default=None)


def run_duration(run: TrainingRun, now: datetime | None = None) -> str:
    """How long the stages ran (until now while live), not counting a wait for an approval."""
    start = _aware(run.started_at)
    if start is None:
        return ""
    if run.status in LIVE:
        end = now or utcnow()
    else:
        end = _gate_reached(run) or _aware(run.finished_at) or (now or utcnow())
    return human_seconds((end - start).total_seconds())


def run_waited(run: TrainingRun, now: datetime | None = None) -> str:
    """How long the round waited at the deploy gate for a person's approval ("" when it did not)."""
    reached = _gate_reached(run)
    if reached is None or run.status in LIVE:
        return ""
    if run.status == RunStatus.awaiting_approval.value:
        end = now or utcnow()
    else:
        end = _aware(run.finished_at) or reached
    waited = (end - reached).total_seconds()
    return human_seconds(waited) if waited >= 1 else ""


def _names(db: Session, ids: Iterable[int | None]) -> dict[int, str]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    return dict(
        db.execute(select(ModelVersion.id, ModelVersion.name).where(ModelVersion.id.in_(wanted))).all()
    )


@dataclass(frozen=True)
class RunRow:
    """One line of the runs list."""

    run: TrainingRun
    parent_name: str
    duration: str

    @property
    def live(self) -> bool:
        """Queued or running."""
        return self.run.status in LIVE


def run_rows(db: Session, limit: int = 50) -> list[RunRow]:
    """Recent runs, read only (the scheduler's reaper marks dead workers' runs failed)."""
    items = run_pages.list_runs(db, limit=limit)
    names = _names(db, (r.parent_policy_id for r in items))
    return [RunRow(r, names.get(r.parent_policy_id or 0, ""), run_duration(r)) for r in items]


@dataclass(frozen=True)
class RoundFormOptions:
    """Choices of the start-round form."""

    queues: list[PromptQueue]
    policies: list[ModelVersion]
    reward_models: list[ModelVersion]
    deployed_id: int | None
    presets_json: str
    methods_json: str
    methods: list[stage_defs.Method]
    sequences: dict[str, str]
    stages: list[stage_defs.Stage]
    stage_labels: dict[str, str]


def form_options(db: Session) -> RoundFormOptions:
    """Queues, policies (the deployed one first) and reward models to choose from."""
    versions = registry.list_versions(db)
    policies = sorted(
        (v for v in versions if v.kind == ModelKind.policy.value), key=lambda v: (not v.is_deployed, -v.id)
    )
    deployed = next((v.id for v in policies if v.is_deployed), None)
    return RoundFormOptions(
        queues=list(db.scalars(select(PromptQueue).order_by(PromptQueue.name))),
        policies=policies,
        reward_models=[v for v in versions if v.kind == ModelKind.reward.value],
        deployed_id=deployed,
        presets_json=presets_json(),
        methods_json=methods_json(),
        methods=list(stage_defs.METHODS.values()),
        sequences={m: stage_defs.describe(m).replace(" -> ", " → ") for m in stage_defs.METHODS},
        stages=list(stage_defs.STAGES.values()),
        stage_labels=stage_defs.labels(),
    )


@dataclass(frozen=True)
class Console:
    """The /ops page: runs, the start-round form, workers and queue lengths."""

    rows: list[RunRow]
    options: RoundFormOptions
    form: RoundForm
    workers: list[system.WorkerStatus]
    queue_lengths: dict[str, int | None]

    @property
    def any_live(self) -> bool:
        """Whether the runs list should keep refreshing itself."""
        return any(r.live for r in self.rows)


def console(db: Session, settings: Settings, form: RoundForm | None = None) -> Console:
    """Everything the ops start page shows (optionally with a form as the user sent it)."""
    options = form_options(db)
    return Console(
        rows=run_rows(db),
        options=options,
        form=form or RoundForm(parent_policy_id=str(options.deployed_id or "")),
        workers=system.workers(db),
        queue_lengths=system.queue_lengths(settings),
    )


def start_from_form(db: Session, form: RoundForm, by: User) -> TrainingRun:
    """Validate the form and start the round; on any error nothing is stored (a savepoint)."""
    request = to_request(db, form)
    try:
        with db.begin_nested():
            return runs.start_round(db, request, by)
    except AppError as exc:  # no parent deployed, no reward model, no data: shown on the form
        raise FormError(exc.message) from None


@dataclass(frozen=True)
class StageView:
    """One stage's progress bar."""

    stage: RunStage
    label: str

    @property
    def percent(self) -> int:
        """Progress as a whole percentage."""
        return round(100 * (self.stage.progress or 0.0))


@dataclass(frozen=True)
class ChartView:
    """One metric curve, ready to embed."""

    name: str
    svg: Markup
    last: str


@dataclass(frozen=True)
class StageCharts:
    """The curves of one stage."""

    stage: str
    label: str
    charts: list[ChartView]


@dataclass(frozen=True)
class RunPage:
    """The run page and its self-refreshing fragment."""

    run: TrainingRun
    parent: ModelVersion | None
    batch: ExportBatch | None
    stages: list[StageView]
    eta: str
    duration: str
    charts: list[StageCharts]
    waited: str
    logs: list[RunLog]
    outputs: dict[int, str] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    eval_rows: list[evaluation_view.EvalRow] = field(default_factory=list)
    eval_prompts: int | None = None
    eval_scorer: evaluation_view.Scorer | None = None  # the reward model behind the RM rows
    # Why the deploy gate held the round (empty: it passed); None before the evaluation ran.
    gate_reasons: list[str] | None = None
    method: str = ""  # the method's label

    @property
    def live(self) -> bool:
        """Queued or running: the page keeps polling."""
        return self.run.status in LIVE

    @property
    def can_cancel(self) -> bool:
        """Cancel applies to live rounds and to rounds waiting at the gate."""
        return self.run.status in LIVE or self.run.status == RunStatus.awaiting_approval.value

    @property
    def can_resume(self) -> bool:
        """Failed or cancelled rounds can be resumed from their last completed stage."""
        return self.run.status in (RunStatus.failed.value, RunStatus.cancelled.value)

    @property
    def awaiting_approval(self) -> bool:
        """The round waits for an ops approval to deploy."""
        return self.run.status == RunStatus.awaiting_approval.value


def _stage_order(run: TrainingRun) -> list[str]:
    return [s.name for s in run.stages]


# The curves InstructGPT practitioners watch come first, with readable titles; any other series follows.
METRIC_TITLES = {
    "loss": "Loss",
    "valid_loss": "Validation loss",
    "accuracy": "RM accuracy on training batches",
    "valid_accuracy": "RM accuracy on held-out comparisons (validation)",
    "reward": "Reward (RM score)",
    "rm_score": "RM score",
    "kl": "KL from the parent",
    "response_length": "Response length (tokens)",
    "lr": "Learning rate",
    "reward_accuracy": "DPO reward accuracy",
    "reward_margin": "DPO reward margin",
    "chosen_logp": "Log-prob of chosen",
    "rejected_logp": "Log-prob of rejected",
}


def metric_title(name: str) -> str:
    """A readable title for a metric name."""
    return METRIC_TITLES.get(name, name.replace("_", " ").capitalize())


def _metric_rank(name: str) -> tuple[int, str]:
    keys = list(METRIC_TITLES)
    return (keys.index(name) if name in keys else len(keys), name)


def metric_charts(series: list[run_pages.Series], order: list[str]) -> list[StageCharts]:
    """Metric series grouped by stage (in run order), each drawn as an SVG line chart."""
    grouped: dict[str, list[ChartView]] = {}
    for s in sorted(series, key=lambda s: _metric_rank(s.name)):
        title = metric_title(s.name)
        last = f"{charts.fmt_number(s.points[-1][1])} at step {s.points[-1][0]}" if s.points else ""
        svg = Markup(charts.line_chart(s.points, title))  # noqa: S704 - charts escape every text they draw
        grouped.setdefault(s.stage, []).append(ChartView(title, svg, last))
    ordered = [n for n in order if n in grouped] + sorted(n for n in grouped if n not in order)
    return [StageCharts(n, stage_defs.label(n), grouped[n]) for n in ordered]


def run_page(db: Session, run_id: int) -> RunPage:
    """A run with its stages, curves, log tail, lineage and evaluation (read only)."""
    run = runs.get_run(db, run_id)
    evaluation = next((dict(s.metrics or {}) for s in run.stages if s.name == stage_defs.EVALUATE), {})
    produced = {s.output_version_id for s in run.stages if s.output_version_id is not None}
    names = _names(db, [*produced, evaluation_view.reward_model_id(evaluation)])
    outputs = {vid: names[vid] for vid in produced if vid in names}
    reasons = gate_decision(run.deploy_gate or {}, evaluation)[1] if evaluation else None
    return RunPage(
        run=run,
        parent=db.get(ModelVersion, run.parent_policy_id) if run.parent_policy_id else None,
        batch=db.get(ExportBatch, run.export_batch_id) if run.export_batch_id else None,
        stages=[StageView(s, stage_defs.label(s.name)) for s in run.stages],
        eta=human_seconds(run_pages.eta_seconds(run)),
        duration=run_duration(run),
        waited=run_waited(run),
        charts=metric_charts(run_pages.metric_series(db, run.id), _stage_order(run)),
        logs=run_pages.log_tail(db, run.id, n=40),
        outputs=outputs,
        evaluation=evaluation,
        eval_rows=evaluation_view.evaluation_rows(evaluation),
        eval_prompts=evaluation_view.prompt_count(evaluation),
        eval_scorer=evaluation_view.scorer(evaluation, names, produced),
        gate_reasons=reasons,
        method=_round_methods(db, [run.id]).get(run.id, run.method),
    )


@dataclass(frozen=True)
class VersionRow:
    """One model version with its lineage and its human win-rate against its parent."""

    version: ModelVersion
    parent_name: str
    win: registry.WinRate | None
    key_metrics: list[tuple[str, str]]
    method: str = ""  # the label of the round's method ("" for versions registered outside a round)
    stage: str = ""  # the label of the stage that produced it
    ancestry: list[str] = field(default_factory=list)  # oldest first, ending with the parent
    baseline_name: str = ""  # the policy the win-rate is against: its round's starting policy


def _ancestry(version: ModelVersion, by_id: dict[int, ModelVersion], limit: int = 12) -> list[str]:
    chain: list[str] = []
    seen = {version.id}
    at = by_id.get(version.parent_id) if version.parent_id else None
    while at is not None and at.id not in seen and len(chain) < limit:
        chain.append(at.name)
        seen.add(at.id)
        at = by_id.get(at.parent_id) if at.parent_id else None
    return chain[::-1]


def _round_methods(db: Session, run_ids: Iterable[int | None]) -> dict[int, str]:
    wanted = {i for i in run_ids if i is not None}
    if not wanted:
        return {}
    rows = db.execute(select(TrainingRun.id, TrainingRun.method).where(TrainingRun.id.in_(wanted))).all()
    return {rid: stage_defs.METHODS[m].label if m in stage_defs.METHODS else m for rid, m in rows}


@dataclass(frozen=True)
class VersionsPage:
    """The registry page."""

    rows: list[VersionRow]
    deployed: ModelVersion | None
    rollback_to: str
    history: list[tuple[Deployment, str, str]]
    chart: Markup


def key_metrics(metrics: dict[str, Any], limit: int = 6) -> list[tuple[str, str]]:
    """The first few numeric metrics, formatted."""
    out = []
    for name, value in sorted(metrics.items()):
        if isinstance(value, int | float) and not isinstance(value, bool):
            out.append((name, charts.fmt_number(float(value))))
        if len(out) >= limit:
            break
    return out


def versions_page(db: Session) -> VersionsPage:
    """Every version newest first, the deployed one, the deployment history and the Figure 1 chart."""
    versions = registry.list_versions(db)
    by_id = {v.id: v for v in versions}
    methods = _round_methods(db, (v.run_id for v in versions))
    rows: list[VersionRow] = []
    for v in versions:
        parent = by_id.get(v.parent_id) if v.parent_id else None
        win, baseline = None, None
        if v.kind == ModelKind.policy.value:
            # against the policy its round started from: what its evaluation and the sampling mix compare
            baseline = registry.baseline_of(db, v)
            win = registry.win_rate(db, v.id, baseline.id) if baseline is not None else None
        stage = str((v.manifest or {}).get("round", {}).get("stage", ""))
        rows.append(
            VersionRow(
                v,
                parent.name if parent else "",
                win,
                key_metrics(v.metrics or {}),
                method=methods.get(v.run_id or 0, ""),
                stage=stage_defs.label(stage) if stage else "",
                ancestry=_ancestry(v, by_id),
                baseline_name=baseline.name if baseline is not None else "",
            )
        )
    points = [
        charts.RatePoint(
            label=r.version.name,
            rate=r.win.rate,
            low=r.win.interval[0] if r.win.interval else None,
            high=r.win.interval[1] if r.win.interval else None,
            n=r.win.n,
        )
        for r in reversed(rows)
        if r.win is not None
    ]
    history = registry.deployment_history(db)
    names = _names(db, [h.version_id for h in history] + [h.previous_version_id for h in history])
    deployed = next((v for v in versions if v.is_deployed), None)
    # The newest deployment record is the one that made the current policy live.
    latest = history[0] if history and deployed and history[0].version_id == deployed.id else None
    return VersionsPage(
        rows=rows,
        deployed=deployed,
        rollback_to=names.get(latest.previous_version_id or 0, "") if latest else "",
        history=[
            (h, names.get(h.version_id, ""), names.get(h.previous_version_id or 0, "")) for h in history
        ],
        chart=Markup(  # noqa: S704 - charts escape every text they draw
            charts.win_rate_chart(points, "Human preference for each policy over its parent")
        ),
    )
