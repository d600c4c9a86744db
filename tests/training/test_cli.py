"""The training CLI as someone with their own data meets it: presets, prompt files, rows that chain
from `sample` to `reward`, evaluation output, resumable PPO and clear errors."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from training.callbacks import StopTraining
from training.cli import build_parser, main, read_prompts, stage_config
from training.config import PPOConfig, RewardConfig, RuntimeConfig, SFTConfig
from training.data import read_batch, write_batch
from training.implicit import IMPLICIT_FILE

CPU = RuntimeConfig(device="cpu", threads=1)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


class Log:
    """Collects log lines; optionally stops after n progress reports."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.lines: list[str] = []
        self.steps = 0
        self.stop_after = stop_after

    def on_log(self, line: str) -> None:
        self.lines.append(line)

    def on_progress(self, stage: str, step: int, total: int, metrics: dict[str, Any]) -> None:
        self.steps += 1

    def should_stop(self) -> bool:
        return self.stop_after is not None and self.steps >= self.stop_after


def test_presets_are_the_rounds_presets_and_set_overrides_them() -> None:
    args = build_parser().parse_args(
        ["ppo", "--batch", "b", "--policy", "p", "--reward-model", "r", "--out", "o"]
    )
    quick = stage_config(PPOConfig, "ppo", args)
    assert args.preset == "quick" and quick.total_episodes == 256 and quick.checkpoint_every == 2
    args = build_parser().parse_args(
        ["ppo", "--batch", "b", "--policy", "p", "--reward-model", "r", "--out", "o", "--preset", "paper",
         "--set", "lr=1e-5"]
    )  # fmt: skip
    paper = stage_config(PPOConfig, "ppo", args)
    assert paper.total_episodes == PPOConfig().total_episodes and paper.lr == 1e-5


def test_every_stage_that_runs_a_model_takes_device_and_threads() -> None:
    required = {
        "base": [],
        "sft": ["--batch", "b", "--base", "m", "--out", "o"],
        "reward": ["--batch", "b", "--base", "m", "--out", "o"],
        "implicit-reward": ["--dpo", "d", "--out", "o"],
        "ppo": ["--batch", "b", "--policy", "m", "--reward-model", "r", "--out", "o"],
        "dpo": ["--batch", "b", "--base", "m", "--out", "o"],
        "sample": ["--model", "m"],
        "evaluate": ["--model", "m"],
    }
    for cmd, args in required.items():
        parsed = build_parser().parse_args([cmd, *args, "--device", "cpu", "--threads", "2"])
        assert (parsed.device, parsed.threads) == ("cpu", 2), cmd


def test_implicit_reward_applies_device_and_threads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import training.implicit

    seen: dict[str, Any] = {}
    dpo, out = tmp_path / "d", str(tmp_path / "o")
    dpo.mkdir()
    (dpo / "config.json").write_text("{}")  # passes the CLI's check that --dpo holds a model

    def fake(dpo: str, out: str, reference: Any, beta: Any, batch: Any, device: str) -> Path:
        seen.update(device=device, threads=torch.get_num_threads())
        return Path(out)

    monkeypatch.setattr(training.implicit, "implicit_reward_from_dpo", fake)
    main(["implicit-reward", "--dpo", str(dpo), "--out", out, "--device", "cpu", "--threads", "2"])
    torch.set_num_threads(1)
    assert seen == {"device": "cpu", "threads": 2}
    main(["implicit-reward", "--dpo", str(dpo), "--out", out])  # auto: CUDA only where there is one
    assert seen["device"] == ("cuda" if torch.cuda.is_available() else "cpu")


def test_resolve_device_picks_cuda_only_where_present(monkeypatch: pytest.MonkeyPatch) -> None:
    from training.models import resolve_device

    for present, auto in ((True, "cuda"), (False, "cpu")):
        monkeypatch.setattr(torch.cuda, "is_available", lambda present=present: present)
        assert resolve_device("auto") == resolve_device(None) == auto
        assert resolve_device("cpu") == "cpu" and resolve_device("cuda:1") == "cuda:1"


def test_quick_ppo_runs_at_least_three_episodes_per_train_prompt() -> None:
    args = build_parser().parse_args(
        ["ppo", "--batch", "b", "--policy", "p", "--reward-model", "r", "--out", "o"]
    )
    quick = stage_config(PPOConfig, "ppo", args)
    assert quick.min_prompt_passes == 3 and quick.rollout_batch_size == 64
    assert quick.episodes_for(40) == 256  # a round on a few dozen prompts: the preset's count
    assert quick.episodes_for(1350) == 4096  # 3 x 1350 = 4050, rounded up to 64 rollouts of 64
    assert PPOConfig(total_episodes=12, rollout_batch_size=4).episodes_for(10_000) == 12  # no floor


def test_sample_reads_a_prompts_file_and_its_rows_feed_reward(
    micro_base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = tmp_path / "prompts.jsonl"
    conversation = [{"role": "user", "content": "Say cat two times."}]
    prompts.write_text(
        '{"prompt": "What is 2 plus 3?"}\n\n{"prompt": "Say dog two times."}\n'
        + json.dumps({"messages": conversation})
        + "\n"
    )
    out = tmp_path / "samples.jsonl"
    main(["sample", "--model", str(micro_base), "--prompts-file", str(prompts), "-k", "3", "--seed", "1",
          "--max-new-tokens", "6", "--out", str(out), "--device", "cpu", "--threads", "1"])  # fmt: skip
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert not (tmp_path / "samples.jsonl.tmp").exists()  # written whole, then renamed into place
    assert [r.get("prompt", r.get("messages")) for r in rows] == [
        "What is 2 plus 3?",
        "Say dog two times.",
        conversation,  # written back as "messages", which every stage reads
    ]
    assert all(len(r["completions"]) == 3 and all(isinstance(c, str) for c in r["completions"]) for r in rows)
    assert all(t is not None and len(t) > 0 for r in rows for t in r["token_ids"])
    # a user ranks the rows as they are and trains a reward model on them
    ranked = [{**r, "ranks": [1, 2, 3]} for r in rows]
    batch = write_batch(tmp_path / "b", rankings=ranked)
    # completions printed as objects by older versions are read as their text too
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "rankings.jsonl").write_text(
        json.dumps(
            {"prompt": "p", "completions": [{"text": "a", "token_ids": None}, {"text": "b"}], "ranks": [1, 2]}
        )
    )
    assert read_batch(tmp_path / "old").rankings[0]["completions"] == ["a", "b"]
    main(["reward", "--batch", str(batch), "--base", str(micro_base), "--out", str(tmp_path / "rm"),
          "--device", "cpu", "--set", "batch_size=2"])  # fmt: skip
    assert (tmp_path / "rm" / "manifest.json").exists()


def test_evaluate_prints_completions_and_world_metrics_only_for_world_prompts(
    micro_base: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["evaluate", "--model", str(micro_base), "--prompt", "Tell me a joke.", "--max-new-tokens", "4",
          "--temperature", "0.7", "--seed", "0", "--device", "cpu"])  # fmt: skip
    out = capsys.readouterr().out
    first = json.loads(out.splitlines()[0])
    assert first["prompt"] == "Tell me a joke." and isinstance(first["completion"], str)
    metrics = json.loads(out[out.index("{\n") :])
    assert metrics["n"] == 1 and "oracle_score" not in metrics and "made_up" not in metrics
    main(["evaluate", "--model", str(micro_base), "--prompt", "What is 2 plus 3?", "--max-new-tokens", "4",
          "--device", "cpu"])  # fmt: skip
    out = capsys.readouterr().out
    assert "oracle_score" in json.loads(out[out.index("{\n") :])
    assert build_parser().parse_args(["sample", "--model", "m"]).max_new_tokens == (
        build_parser().parse_args(["evaluate", "--model", "m"]).max_new_tokens
    )


def test_missing_batch_and_malformed_rows_are_named(micro_base: Path, tmp_path: Path) -> None:
    from training.sft import run_sft

    with pytest.raises(FileNotFoundError, match="does not exist"):
        run_sft(stage_config_sft(), tmp_path / "nope", micro_base, tmp_path / "out")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "sft.jsonl").write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "c"}\n')
    with pytest.raises(ValueError, match=r"sft.jsonl:2: row has no 'completion'"):
        read_batch(tmp_path / "b")
    # the CLI ends with that one line, not a traceback, and writes nothing
    for batch, message in (
        (tmp_path / "b", r"sft.jsonl:2: row has no"),
        (tmp_path / "nope", "does not exist"),
    ):
        argv = ["sft", "--batch", str(batch), "--base", str(micro_base), "--out", str(tmp_path / "o")]
        with pytest.raises(SystemExit, match=rf"^error: .*{message}"):
            main([*argv, "--device", "cpu"])
    assert not (tmp_path / "o").exists()
    (tmp_path / "b" / "sft.jsonl").write_text('{"prompt": "a", "completion": "b"}\n')
    argv = ["reward", "--batch", str(tmp_path / "b"), "--base", str(micro_base), "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit, match=r"^error: .*no train comparisons in rankings.jsonl or pairwise"):
        main([*argv, "--device", "cpu"])


def stage_config_sft() -> Any:
    from training.config import SFTConfig

    return SFTConfig(epochs=1, runtime=CPU)


def test_reward_logs_skipped_centring_and_few_steps(
    micro_base: Path, world_batch: Path, tmp_path: Path
) -> None:
    from training.reward import run_reward

    rankings = read_batch(world_batch).rankings
    batch = write_batch(tmp_path / "b", rankings=rankings)  # no demonstrations
    log = Log()
    rm = run_reward(RewardConfig(batch_size=64, runtime=CPU), batch, micro_base, tmp_path / "rm", [log])
    assert any("not centred" in line for line in log.lines)
    assert any(re.search(r"in batches of 64 prompts leave only \d optimiser steps", x) for x in log.lines)
    assert json.loads((rm / "manifest.json").read_text())["metrics"]["bias"] == 0.0


def test_ppo_raises_its_episodes_to_the_floor_per_train_prompt(
    micro_base: Path, world_batch: Path, tmp_path: Path
) -> None:
    from training.data import read_batch
    from training.ppo import run_ppo
    from training.reward import run_reward

    n_train = len(read_batch(world_batch).split("prompts", "train"))
    rm = run_reward(RewardConfig(batch_size=8, runtime=CPU), world_batch, micro_base, tmp_path / "rm")
    cfg = PPOConfig(
        total_episodes=4, min_prompt_passes=0.1, rollout_batch_size=4, minibatch_size=4, max_new_tokens=4,
        runtime=CPU,
    )  # fmt: skip
    expected = 4 * -(-n_train // 40)  # 0.1 per prompt, whole rollouts of 4
    assert expected > 4
    log = Log()
    out = run_ppo(cfg, world_batch, micro_base, rm, tmp_path / "ppo", [log])
    assert any(f"{expected} episodes instead of total_episodes 4" in line for line in log.lines)
    metrics = json.loads((out / "manifest.json").read_text())["metrics"]
    assert metrics["episodes"] == expected and len(metrics["history"]) == expected // 4


@pytest.mark.parametrize("estimator", ["gae", "rloo"])
def test_stopped_ppo_resumes_from_its_checkpoint(
    micro_base: Path, world_batch: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, estimator: str
) -> None:
    import training.ppo
    from training.ppo import run_ppo
    from training.ppo_state import checkpoint_path
    from training.reward import run_reward

    rm = run_reward(RewardConfig(batch_size=8, runtime=CPU), world_batch, micro_base, tmp_path / "rm")
    cfg = PPOConfig(
        total_episodes=12,
        rollout_batch_size=4,
        minibatch_size=4,
        max_new_tokens=4,
        checkpoint_every=1,
        advantage_estimator=estimator,
        n_samples_per_prompt=2 if estimator == "rloo" else 1,
        runtime=CPU,
    )
    if estimator == "rloo":  # no critic: no value model is built, saved or restored

        def no_value_model(*args: object, **kwargs: object) -> None:
            raise AssertionError("a value model was built")

        monkeypatch.setattr(training.ppo, "wrap_reward_model", no_value_model)
    out = tmp_path / "ppo"
    with pytest.raises(StopTraining):
        run_ppo(cfg, world_batch, micro_base, rm, out, [Log(stop_after=2)])
    assert checkpoint_path(out).exists() and not out.exists()
    state = torch.load(checkpoint_path(out), weights_only=False)
    assert ("value" in state) == (estimator == "gae")
    assert len(state["opt"]["param_groups"]) == (2 if estimator == "gae" else 1)
    log = Log()
    run_ppo(cfg, world_batch, micro_base, rm, out, [log])
    assert any("resumed" in line and "after iteration 2 of 3" in line for line in log.lines)
    assert log.steps == 1  # only the third iteration ran again
    history = json.loads((out / "manifest.json").read_text())["metrics"]["history"]
    assert [h["iteration"] for h in history] == [0, 1, 2]
    assert not checkpoint_path(out).exists()


def test_a_prompts_file_takes_conversations_and_names_its_bad_lines(tmp_path: Path) -> None:
    f = tmp_path / "prompts.jsonl"
    f.write_text('{"prompt": "a"}\n{"messages": [{"role": "user", "content": "b"}]}\n')
    args = build_parser().parse_args(["sample", "--model", "m", "--prompts-file", str(f)])
    assert read_prompts(args) == ["a", [{"role": "user", "content": "b"}]]
    for bad, message in (
        ('{"prompt": "a"', "malformed JSON"),
        ('{"prompt": 3}', '"prompt" must be a string, not int'),
    ):
        f.write_text('{"prompt": "a"}\n' + bad + "\n")
        with pytest.raises(SystemExit, match=f"prompts.jsonl:2: {message}"):
            read_prompts(args)


def test_wrong_paths_and_settings_are_refused_before_any_work(micro_base: Path, tmp_path: Path) -> None:
    rm, empty, taken, out = tmp_path / "rm", tmp_path / "empty", tmp_path / "taken", str(tmp_path / "o")
    implicit = tmp_path / "implicit"
    for d in (rm, empty, taken, implicit):
        d.mkdir()
    (implicit / IMPLICIT_FILE).write_text('{"beta": 0.1, "bias": 0.0}')
    (implicit / "manifest.json").write_text('{"kind": "reward"}')
    (rm / "config.json").write_text("{}")
    (rm / "manifest.json").write_text('{"kind": "reward"}')
    sft = ["sft", "--batch", "b", "--out", out, "--base"]
    ppo = ["ppo", "--batch", "b", "--out", out, "--policy"]
    ranked = tmp_path / "ranked.jsonl"  # samples a user has ranked since: sampling again must not erase them
    ranked.write_text('{"prompt": "p", "completions": ["a", "b"], "ranks": [2, 1]}\n')
    cases = [
        (["sft", "--batch", "b", "--base", str(micro_base), "--out", str(taken)], "--out .*taken exists"),
        (
            ["sample", "--model", str(micro_base), "--prompt", "p", "--out", str(ranked)],
            "ranked.jsonl exists",
        ),
        ([*sft, str(tmp_path / "nope")], "--base .*nope does not exist"),
        ([*sft, str(empty)], "--base .*empty is not a model directory"),
        ([*ppo, str(micro_base), "--reward-model", str(micro_base)], "is a policy, not a reward model"),
        ([*ppo, str(rm), "--reward-model", str(rm)], "--policy .*rm is a reward model, not a policy"),
        (
            ["reward", "--batch", "b", "--out", out, "--base", str(implicit)],
            "--base .*implicit is an implicit reward model",
        ),
        ([*sft, str(micro_base), "--set", "lr=fast"], "setting 'lr': 'fast' is not a valid float"),
        ([*sft, str(micro_base), "--set", "lr"], "a setting is KEY=VALUE, not 'lr'"),
        ([*sft, str(micro_base), "--set", "runtime.nope=1"], "unknown setting 'runtime.nope'"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit, match=message):
            main(argv)
    assert (
        not (tmp_path / "o").exists()
        and list(taken.iterdir()) == []
        and '"ranks": [2, 1]' in ranked.read_text()
    )
    # a setting whose default is None takes its declared type
    args = build_parser().parse_args([*sft, str(micro_base), "--set", "runtime.threads=2"])
    assert stage_config(SFTConfig, "sft", args).runtime.threads == 2


@pytest.mark.parametrize(
    "flag",
    ["-k 0", "--temperature -1", "--max-new-tokens 0", "--top-p 0", "--top-p 1.5", "--threads 0", "-k x"],
)
def test_sampling_flags_out_of_range_are_refused_by_the_parser(
    flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """-k 0 crashed in a reshape, --max-new-tokens 0 printed empty completions, a negative
    temperature sampled greedily without a word (0 means greedy, and says so in --help)."""
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["sample", "--model", "m", "--prompt", "p", *flag.split()])
    err = capsys.readouterr().err
    assert (
        e.value.code == 2
        and f"argument {flag.split()[0]}: " in err
        and ("must be" in err or "invalid" in err)
    )


@pytest.mark.parametrize("beta", ["0", "-0.1", "x"])
def test_implicit_reward_beta_must_be_above_zero(beta: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["implicit-reward", "--dpo", "d", "--out", "o", "--beta", beta])
    assert "argument --beta: " in capsys.readouterr().err


def test_evaluate_takes_only_the_batch_splits_there_are(capsys: pytest.CaptureFixture[str]) -> None:
    """--split validation (Hugging Face's name) found no prompts; the splits are train, valid, test."""
    with pytest.raises(SystemExit):
        build_parser().parse_args(["evaluate", "--model", "m", "--batch", "b", "--split", "validation"])
    assert "invalid choice: 'validation' (choose from 'train', 'valid', 'test')" in capsys.readouterr().err
