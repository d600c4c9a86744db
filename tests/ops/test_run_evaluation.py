"""The run page's evaluation: a table of new vs parent with intervals, labelled curves, compact
axis labels, run time apart from the wait for an approval, and a KL that is never shown negative."""

from __future__ import annotations

from datetime import timedelta

from app.db import utcnow
from tests.ops.conftest import add_series, make_run, model_dir

EVAL = {
    "new_n": 64, "parent_n": 64,
    "new_rm_score": 0.412, "parent_rm_score": 0.118,
    "rm_gain": 0.294, "rm_gain_lo": 0.171, "rm_gain_hi": 0.417,
    "new_oracle_score": 0.61, "parent_oracle_score": 0.48,
    "oracle_win_rate": 0.66, "oracle_lo": 0.57, "oracle_hi": 0.75, "oracle_n": 64, "oracle_ties": 0.3,
    "new_over_refusal": 0.25, "parent_over_refusal": 0.0625,
    "over_refusal_rise": 0.1875, "over_refusal_rise_lo": 0.031, "over_refusal_rise_hi": 0.344,
    "kl": -0.0039,
}


def _done_run(db, status: str, waited_min: int):  # type: ignore[no-untyped-def]
    reached = utcnow() - timedelta(minutes=waited_min)
    run = make_run(db, status=status, progress=1.0, started_at=reached - timedelta(minutes=5),
                   finished_at=reached if status == "awaiting_approval" else utcnow())
    for s in run.stages:
        s.status, s.finished_at = "succeeded", reached
    run.stages[-1].metrics = dict(EVAL)
    db.flush()
    return run


def test_evaluation_is_a_table_of_new_vs_parent_with_intervals(db, login) -> None:  # type: ignore[no-untyped-def]
    run = _done_run(db, "awaiting_approval", 20)
    html = login("ops").get(f"/ops/runs/{run.id}").text
    assert "the new policy against its parent on 64 held-out prompts" in html
    assert 'id="eval-table"' in html
    assert "<td>0.412</td><td>0.118</td><td>+0.294</td>" in html and "[0.171, 0.417]" in html
    assert "Oracle win-rate of the new policy over its parent" in html and "[57%, 75%]" in html
    # over-refusal: the paired interval of its rise
    assert "<td>0.25</td><td>0.0625</td><td>+0.188</td>" in html and "<td>[0.031, 0.344]</td>" in html
    # KL: never shown below zero; the raw estimate is explained
    assert "KL from the parent" in html and "<td>0</td>" in html and "raw estimate -3.9e-3" in html
    assert "too few to tell" not in html


def test_ran_and_waited_for_approval_are_apart(db, login) -> None:  # type: ignore[no-untyped-def]
    web = login("ops")
    waiting = _done_run(db, "awaiting_approval", 20)
    html = web.get(f"/ops/runs/{waiting.id}").text
    assert '<dt>Ran</dt><dd id="run-ran">5 min 0 s</dd>' in html
    assert "<dt>Waiting for approval</dt>" in html and 'id="run-waited">20 min' in html
    approved = _done_run(db, "succeeded", 30)
    html = web.get(f"/ops/runs/{approved.id}").text
    assert '<dt>Ran</dt><dd id="run-ran">5 min 0 s</dd>' in html and "<dt>Waited for approval</dt>" in html
    assert "Took" not in html


def test_curves_say_which_accuracy_and_axis_labels_fit(db, login) -> None:  # type: ignore[no-untyped-def]
    run = make_run(db, status="succeeded", progress=1.0, finished_at=utcnow())
    add_series(db, run, "reward", "accuracy", [0.6, 0.78])
    add_series(db, run, "ppo", "kl", [0.0002605, 0.0009])
    html = login("ops").get(f"/ops/runs/{run.id}").text
    assert ">RM accuracy on training batches<" in html
    assert ">2.6e-4<" in html and "0.0002605" not in html


def test_the_evaluation_names_the_reward_model_that_scored_it(db, login, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from app.policies import service as registry

    web = login("ops")
    earlier = registry.register_version(
        db, name="rm <b>earlier</b>", kind="reward", path=model_dir(tmp_path, "e")
    )
    run = _done_run(db, "succeeded", 1)
    run.stages[-1].metrics = {**EVAL, "reward_model_id": earlier.id}
    db.flush()
    html = web.get(f"/ops/runs/{run.id}").text
    link = f'<a href="/ops/versions#v{earlier.id}">rm &lt;b&gt;earlier&lt;/b&gt;</a>'  # the name escaped
    assert f"Reward-model scores from {link}" in html
    assert "registered before this round" in html and "<b>earlier" not in html

    trained = registry.register_version(
        db, name="rm-r9-reward", kind="reward", path=model_dir(tmp_path, "r9")
    )
    run.stages[1].output_version_id = trained.id  # the round's reward stage wrote it
    run.stages[-1].metrics = {**EVAL, "reward_model_id": trained.id}
    db.flush()
    html = web.get(f"/ops/runs/{run.id}").text
    assert "Reward-model scores from" in html and "rm-r9-reward</a>, trained in this round" in html

    # no reward model: no RM rows and a line saying so; an evaluation from before the record: no line
    run.stages[-1].metrics = {k: v for k, v in EVAL.items() if "rm_" not in k}
    db.flush()
    html = web.get(f"/ops/runs/{run.id}").text
    assert "No reward model scored this evaluation." in html and "Reward-model score (mean)" not in html
    run.stages[-1].metrics = dict(EVAL)
    db.flush()
    html = web.get(f"/ops/runs/{run.id}").text
    assert 'id="eval-rm"' not in html and "Reward-model score (mean)" in html
