"""Import every table so Base.metadata is complete (Alembic, tests, create_all)."""

from app.auth.models import ApiToken, LoginAttempt, User, UserRole
from app.demonstrations.models import Demonstration
from app.edits.models import CompletionEdit
from app.exports.models import ExportBatch
from app.labeling.models import Assignment, Task
from app.policies.models import Deployment, ModelVersion
from app.prompts.models import GuidelineVersion, PIIRedaction, Prompt, PromptImport, PromptQueue
from app.quality.models import LabelerAgreement, QueueAgreement
from app.rankings.models import Completion, Ranking, RankingEntry
from app.runs.models import RunLog, RunMetric, RunStage, TrainingRun
from app.system.models import WorkerHeartbeat

__all__ = [
    "ApiToken",
    "Assignment",
    "Completion",
    "CompletionEdit",
    "Demonstration",
    "Deployment",
    "ExportBatch",
    "GuidelineVersion",
    "LabelerAgreement",
    "LoginAttempt",
    "ModelVersion",
    "PIIRedaction",
    "Prompt",
    "PromptImport",
    "PromptQueue",
    "QueueAgreement",
    "Ranking",
    "RankingEntry",
    "RunLog",
    "RunMetric",
    "RunStage",
    "Task",
    "TrainingRun",
    "User",
    "UserRole",
    "WorkerHeartbeat",
]
