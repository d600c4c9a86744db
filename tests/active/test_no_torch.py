"""The web side of edits and active learning never imports torch (scoring happens in the worker)."""

from __future__ import annotations

import subprocess
import sys


def test_web_side_of_edits_and_active_learning_imports_no_torch() -> None:
    code = (
        "import sys, app.main, app.active.service, app.active.tasks, app.edits.service, app.edits.export; "
        "import training.uncertainty; "
        "bad = [m for m in ('torch', 'transformers') if m in sys.modules]; print(bad); "
        "sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
