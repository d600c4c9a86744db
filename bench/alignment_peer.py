"""Our PPO against TRL's RLOO on the same SFT policy, reward model and prompts.

    bench/setup_trl.sh && python -m bench.alignment_peer RUN [--world alignment|second] [--k K]

RUN is an earlier `python -m bench.alignment --out` (its batch-2, sft, rm and samples.json) or, with
`--world second`, an earlier `python -m bench.cli_world --out` (its b2, sft, rm, test.jsonl and
test-*.jsonl). TRL 1.16's RLOOTrainer (bench/alignment_peer_trl.py, in the venv bench/setup_trl.sh
makes) trains from RUN's SFT policy on the PPO stage's train prompts against RUN's reward model,
DPO's implicit reward, scored as our PPO scores it (bench/peer_reward.py), with the settings RUN's
PPO ran with where the two trainers share one (the benchmark's; on the second world the training
CLI's quick preset). Then it samples the unseen prompts as RUN did and prints the TRL policy beside
RUN's own policies and against RUN's PPO. Writes RUN/peer/ (rloo-kK/ and its log rloo-kK.json); a
trained policy already there is reused.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.alignment import EVAL, SIZES, sample_texts, settings
from bench.alignment_report import pct, policy_rows
from training.chat import encode_prompt, row_prompt, to_messages
from training.config import PPOConfig, SamplingParams
from training.data import read_batch
from training.metrics import paired_diff_ci, per_prompt_means, win_rate_ci
from training.models import load_tokenizer
from training.world.metrics import oracle_scores, oracle_win_rate

ROOT = Path(__file__).resolve().parent.parent
SEED = 0


def peer_rows(batch_dir: Path, tok: Any) -> list[dict[str, Any]]:
    """The PPO stage's train prompts as TRL rows: messages, and our token ids of the rendered prompt.

    TRL renders conversational prompts with the tokenizer's chat template; raises if that gives other
    ids than ours for any prompt (the two trainers would then not see the same prompts)."""
    rows = []
    for r in read_batch(batch_dir).split("prompts", "train"):
        messages = to_messages(row_prompt(r))
        ids = encode_prompt(tok, messages)
        theirs = list(
            tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
        )
        if theirs != ids:
            raise ValueError(f"TRL would tokenize {messages!r} as {theirs}, ours {ids}")
        rows.append({"prompt": messages, "prompt_ids": ids})
    return rows


def run_layout(run: Path, world: str) -> tuple[Path, PPOConfig]:
    """RUN's export batch and the PPO settings its PPO ran with: the benchmark's, or on the second
    world (bench.cli_world) the training CLI's quick preset with its episodes for that batch."""
    if world == "alignment":
        return run / "batch-2", settings(SIZES["full"], False)["ppo"]
    from training.cli import stage_config

    defaults = argparse.Namespace(preset="quick", set=[], config=None, device="cpu", seed=0, threads=1)
    batch, cfg = run / "b2", stage_config(PPOConfig, "ppo", defaults)  # as `python -m training ppo`
    cfg.total_episodes = cfg.episodes_for(len(read_batch(batch).split("prompts", "train")))
    return batch, cfg


def train_rloo(run: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Run the TRL worker (or reuse its policy); its RESULT line as a dict."""
    policy, result = out / f"rloo-k{args.k}", out / f"rloo-k{args.k}.json"
    batch, ppo = run_layout(run, args.world)
    episodes = args.episodes or ppo.total_episodes
    if (policy / "config.json").exists() and result.exists():
        done = dict(json.loads(result.read_text()))
        if done.get("episodes") == episodes:
            print(f"reusing {policy} (delete it to train it again)", flush=True)
            return done
        print(f"{policy} was trained for {done.get('episodes')} episodes, not {episodes}: training again")
    python = Path(args.venv) / "bin" / "python"
    if not python.exists():
        sys.exit(f"no TRL venv at {args.venv}: run bench/setup_trl.sh first")
    if not (run / "rm" / "implicit_reward.json").exists():
        sys.exit(f"{run / 'rm'} is not an implicit reward model (the peer scores with DPO's implicit reward)")
    data = out / "prompts.jsonl"
    rows = peer_rows(batch, load_tokenizer(run / "sft"))
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cmd = [
        str(python), str(ROOT / "bench" / "alignment_peer_trl.py"),
        "--policy", str(run / "sft"), "--rm", str(run / "rm"), "--data", str(data),
        "--out", str(policy),
        "--episodes", str(episodes), "--k", str(args.k),
        "--rollout", str(ppo.rollout_batch_size), "--minibatch", str(ppo.minibatch_size),
        "--lr", str(ppo.lr), "--beta", str(ppo.kl_coef), "--warmup", str(ppo.warmup_steps),
        "--max-new-tokens", str(ppo.max_new_tokens), "--missing-eos-penalty", str(ppo.missing_eos_penalty),
        "--threads", str(args.threads), "--seed", str(SEED),
    ]  # fmt: skip
    print("$ " + " ".join(cmd), flush=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.exit(f"the TRL worker failed (exit {proc.returncode}); its output:\n{proc.stdout[-4000:]}")
    res = {**json.loads(lines[-1][len("RESULT ") :]), "episodes": episodes}
    result.write_text(json.dumps(res, indent=1))
    return res


def our_ppo_seconds(run: Path) -> float | None:
    """Our PPO stage's wall clock as RUN's results.json recorded it (runs before it did: None)."""
    path = run / "results.json"
    if not path.exists():
        return None
    value = json.loads(path.read_text()).get("wall_clock", {}).get("PPO")
    return float(value) if value is not None else None


def print_rows(rows: dict[str, dict[str, Any]], n_prompts: int, n: int) -> None:
    """One line per policy: paired difference and win-rate against SFT, ties, behaviour."""
    print(f"\nOn {n_prompts} unseen prompts, {n} samples each (the benchmark's sampling seed)")
    print("| policy | minus SFT (paired) | win-rate vs SFT (ties half) | ties | made-up | over-refusal "
          "| accuracy |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        d, w, b = r["diff_vs_sft"], r["win_vs_sft"], r["behaviour"]
        print(f"| {name} | {d['mean']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}] | {pct(w)} | "
              f"{100 * w['ties']:.0f} % | {pct(b['made_up'])} | {pct(b['over_refusal'])} | "
              f"{pct(b['accuracy'])} |")  # fmt: skip


def against_alignment_run(run: Path, policy: Path, name: str) -> None:
    """Sample the benchmark's unseen prompts as it did; print the policy beside RUN's and against its PPO."""
    done = json.loads((run / "samples.json").read_text())
    prompts, samples = done["prompts"], done["samples"]
    params = SamplingParams(**{**EVAL.to_dict(), "seed": SEED + 1234})
    n = SIZES["full"]["samples"]
    rloo = sample_texts(policy, prompts, n, params)
    both = {k: samples[k] for k in ("SFT", "PPO", "DPO", "best-of-16") if k in samples}
    print_rows(policy_rows(prompts, both | {name: rloo}), len(prompts), n)
    scores = [per_prompt_means(oracle_scores(prompts, s)) for s in (rloo, samples["PPO"])]
    diff, win = paired_diff_ci(*scores), oracle_win_rate(prompts, rloo, samples["PPO"])
    print(f"{name} against our PPO: {diff['mean']:+.3f} [{diff['lo']:+.3f}, {diff['hi']:+.3f}], "
          f"win-rate {pct(win)}, ties {100 * win['ties']:.0f} %")  # fmt: skip


def against_second_world(run: Path, policy: Path, threads: int) -> None:
    """Sample the second world's unseen prompts as bench.cli_world does (`python -m training sample`,
    seed 5); print its table with the policy added, and the policy against that world's PPO."""
    from bench.cli_world import POLICIES, read_completions, report, score, unseen_tasks
    from bench.cli_world import SIZES as CLI_SIZES

    path = run / "peer" / f"test-{policy.name}.jsonl"
    if not path.exists():
        cmd = [sys.executable, "-m", "training", "sample", "--model", str(policy), "--prompts-file",
               str(run / "test.jsonl"), "-k", str(CLI_SIZES["samples"]), "--seed", "5", "--out", str(path),
               "--threads", str(threads)]  # fmt: skip
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    print("\n".join(report({n: run / f"test-{n}.jsonl" for n in POLICIES} | {policy.name: path})))
    tests = unseen_tasks()
    scores = {
        n: [[score(t, c) for c in row] for t, row in zip(tests, read_completions(p, tests), strict=True)]
        for n, p in (("rloo", path), ("ppo", run / "test-ppo.jsonl"))
    }
    diff = paired_diff_ci(per_prompt_means(scores["rloo"]), per_prompt_means(scores["ppo"]))
    win = win_rate_ci(scores["rloo"], scores["ppo"])
    print(f"{policy.name} against that world's PPO (implicit reward): {diff['mean']:+.3f} "
          f"[{diff['lo']:+.3f}, {diff['hi']:+.3f}], win-rate {pct(win)}, "
          f"ties {100 * win['ties']:.0f} %")  # fmt: skip


def main() -> None:
    """Train TRL's RLOO on RUN's reward and print it beside RUN's policies."""
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--world", choices=("alignment", "second"), default="alignment",
                    help="a bench.alignment --out (alignment) or a bench.cli_world one (second)")  # fmt: skip
    ap.add_argument("--venv", default=str(ROOT / ".bench-venvs" / "trl116"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--episodes", type=int, default=0, help="0: as many as RUN's PPO ran")
    ap.add_argument("--k", type=int, default=4, help="RLOO's completions per prompt")
    args = ap.parse_args()
    run = Path(args.run)
    out = run / "peer"
    out.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    res = train_rloo(run, out, args)
    print(f"TRL {res['trl_version']} RLOO: {res['steps']} optimizer steps in {res['seconds']:.0f} s "
          f"(this invocation {time.perf_counter() - t0:.0f} s)")  # fmt: skip
    for h in res["log"][:: max(1, len(res["log"]) // 8)] + res["log"][-1:]:
        length, kl = h["completions/mean_length"], h["kl"]
        print(f"  step {h['step']}: reward {h['reward']:.3f}, KL per token {kl:.4f}, length {length:.1f}")
    policy = out / f"rloo-k{args.k}"
    if args.world == "alignment":
        against_alignment_run(run, policy, f"RLOO k={args.k} (TRL {res['trl_version']})")
        ours = our_ppo_seconds(run)
        mine = f"our PPO {ours:.0f} s" if ours is not None else "our PPO's not recorded in this run"
        print(f"wall clock: TRL RLOO {res['seconds']:.0f} s (training only); {mine}")
    else:
        against_second_world(run, policy, args.threads)


if __name__ == "__main__":
    main()
