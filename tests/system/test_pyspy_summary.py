"""bench.pyspy sorts py-spy's samples into packages by the innermost frame's file."""

from __future__ import annotations

from bench import pyspy


def test_frames_go_to_their_package() -> None:
    assert pyspy.bucket("Connection.execute (sqlalchemy/engine/base.py:1412)") == "SQLAlchemy"
    assert pyspy.bucket("f (/v/lib/python3.11/site-packages/starlette/routing.py:7)") == "Starlette/FastAPI"
    assert pyspy.bucket("root (ranking.html:168)") == "Jinja2 and templates"
    assert pyspy.bucket("WorkerThread.run (anyio/_backends/_asyncio.py:1124)") == "thread hand-offs"
    assert pyspy.bucket("Thread._bootstrap (threading.py:1002)") == "thread hand-offs"
    assert pyspy.bucket("show_task (app/labeling/fast.py:168)") == "app"
    assert pyspy.bucket("dumps (json/encoder.py:200)") == "standard library and other"


def test_shares_count_the_innermost_frame_of_each_stack() -> None:
    raw = (
        'process 1:"python";a (threading.py:1);execute (sqlalchemy/engine/base.py:2) 5\n'
        'process 1:"python";a (threading.py:1);show_task (app/labeling/fast.py:3) 3\n'
        "not a stack line\n"
    )
    assert pyspy.shares(raw) == {"SQLAlchemy": 5, "app": 3}
    want = "pg C=32  py-spy (GIL holder, 8 samples): SQLAlchemy 62 %, app 38 %"
    assert pyspy.lines("pg C=32", raw) == [want]
    assert "no samples" in pyspy.lines("pg C=32", "")[0]
