"""Reward-model settings side by side on an alignment-benchmark run's SFT policy and rankings.

    python -m bench.alignment_rm samples RUN BASE              # once: comparisons and candidates
    python -m bench.alignment_rm train RUN NAME [KEY=VALUE ...] [init=DIR]  # one variant
    python -m bench.alignment_rm report RUN NAME [NAME ...] [--ensemble A+B+C ...]
    python -m bench.alignment_rm families RUN NAME               # per family: RM vs oracle best-of-16
    python -m bench.alignment_rm knowledge MODEL [MODEL ...]     # what a model knows of arithmetic

RUN is an earlier `python -m bench.alignment --out` (its sft/, batch-2/), BASE the small base it used.
A variant starts from the benchmark's RewardConfig with KEY=VALUE overrides and writes RUN/rm-NAME/.
The report prints, per variant (and per ensemble: the mean of its members' standardised scores),
what the benchmark prints about the RM: accuracy against two held-out labelers beside their mutual
agreement, agreement with the oracle itself, and best-of-n under the RM against plain SFT samples
(best-of-1), on the same unseen prompts and candidates for every variant; best-of-64 is the RM's
favourite among all 64 candidates of a prompt (what optimising the RM harder would reach).
`knowledge` prints, for addition and subtraction on held-out and on train argument combinations,
how often a model's most likely answer is the right one, in the corpus's fact format ("7 plus 5 is
12.") and as the completion of the first phrasing of the instruction ("The answer is 12.").
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch

from bench.alignment import SIZES, heldout_comparisons, sample_texts, settings, test_prompts
from bench.alignment_report import rm_section
from training.batching import right_pad, rm_scores, sft_batch
from training.config import SamplingParams, apply_overrides
from training.losses import response_logprobs
from training.metrics import outcome, paired_diff_ci, per_prompt_means, win_rate_ci
from training.models import load_policy, load_scoring_model
from training.reward import run_reward
from training.world.families import MAX_OPERAND, TEMPLATES, args_held_out
from training.world.metrics import oracle_scores
from training.world.tasks import classify, oracle_score, parse_prompt

SIZE = SIZES["full"]
SEED = 0


def samples(run: Path, base: Path) -> None:
    """Held-out comparisons (K per prompt, two labelers) and best-of-16 candidates, saved once."""
    torch.set_num_threads(1)
    held = heldout_comparisons(run / "sft", base, run / "rm", SIZE, SEED)
    prompts = test_prompts(SIZE["eval"], SEED + 99)
    n = SIZE["best_of"] * SIZE["samples"]
    groups = sample_texts(run / "sft", prompts, n, SamplingParams(seed=SEED + 555, max_new_tokens=32))
    (run / "rm_dev_samples.json").write_text(json.dumps({"held": held, "eval": prompts, "groups": groups}))


def train(run: Path, name: str, overrides: list[str]) -> None:
    """Train one RM variant into RUN/rm-NAME (init=DIR: start from DIR instead of the SFT policy)."""
    torch.set_num_threads(1)
    cfg = settings(SIZE, False)["reward"]
    init = [o.partition("=")[2] for o in overrides if o.startswith("init=")]
    apply_overrides(cfg, [o for o in overrides if not o.startswith("init=")])
    run_reward(cfg, run / "batch-2", Path(init[0]) if init else run / "sft", run / f"rm-{name}")


def scores(run: Path, name: str, data: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The variant's scores on the held-out comparisons and the best-of-n candidates (cached)."""
    f = run / f"rm-{name}" / "dev_scores.pt"
    if f.exists():
        return torch.load(f)
    model, tok = load_scoring_model(run / f"rm-{name}"), load_policy(run / "sft")[1]
    out = {}
    for key, prompts, groups in (
        ("held", data["held"]["prompts"], data["held"]["completions"]),
        ("groups", data["eval"], data["groups"]),
    ):
        flat_prompts = [p for p, g in zip(prompts, groups, strict=True) for _ in g]
        flat = rm_scores(model, tok, flat_prompts, [c for g in groups for c in g])
        out[key] = flat.view(len(prompts), -1)
    torch.save(out, f)
    return out


def standardise(s: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each score set shifted and scaled to mean 0, standard deviation 1 (for ensembles)."""
    return {k: (v - v.mean()) / v.std().clamp_min(1e-6) for k, v in s.items()}


def line(label: str, data: dict[str, Any], s: dict[str, torch.Tensor]) -> str:
    """One table row for scores s."""
    held = {**data["held"], "rm_scores": s["held"].tolist()}
    rm = rm_section(held)
    ratio = (rm["ranks_a"]["mean"] + rm["ranks_b"]["mean"]) / 2 / rm["agreement"]["mean"]
    vs = rm["vs_oracle"]
    prompts, groups, n_max = data["eval"], data["groups"], SIZE["best_of"]
    picks = best_of_n_picks(s["groups"], groups, n_max)
    plain_scores = oracle_scores(prompts, picks[1])
    plain = per_prompt_means(plain_scores)
    cells = []
    for n in (4, n_max):
        d = paired_diff_ci(per_prompt_means(oracle_scores(prompts, picks[n])), plain)
        cells.append(f"{d['mean']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}]")
    for n in (n_max, n_max * SIZE["samples"]):
        w = win_rate_ci(oracle_scores(prompts, picks[n]), plain_scores)
        cells.append(f"{100 * w['mean']:.1f} % [{100 * w['lo']:.1f}, {100 * w['hi']:.1f}]")
    kinds = ("all", "correct vs wrong", "answer vs refusal (answerable)")
    agree = [f"{100 * vs[k]['mean']:.1f}" for k in kinds]
    acc = f"{100 * rm['ranks_a']['mean']:.1f} / {100 * rm['ranks_b']['mean']:.1f}"
    return f"| {label} | {acc} | {ratio:.3f} | {' / '.join(agree)} | {' | '.join(cells)} |"


def best_of_n_picks(s: torch.Tensor, groups: list[list[str]], n_max: int) -> dict[int, list[list[str]]]:
    """For n in 1, 4, n_max: per prompt and sample, the RM's favourite among its n candidates; for
    n = n_max x samples, the RM's favourite among all the prompt's candidates, for every sample."""
    per = SIZE["samples"]
    view = s.view(len(groups), per, n_max)
    out = {}
    for n in (1, 4, n_max):
        pick = view[:, :, :n].argmax(-1)
        out[n] = [[g[j * n_max + int(pick[i, j])] for j in range(per)] for i, g in enumerate(groups)]
    best = s.view(len(groups), -1).argmax(-1)
    out[per * n_max] = [[g[int(best[i])]] * per for i, g in enumerate(groups)]
    return out


def report(run: Path, names: list[str], ensembles: list[str]) -> None:
    """The comparison table."""
    torch.set_num_threads(1)
    data = json.loads((run / "rm_dev_samples.json").read_text())
    print(
        "| variant | RM acc A / B (%) | acc / agreement | oracle agreement: all / correct-vs-wrong / "
        "answer-vs-refusal (%) | best-of-4 - SFT | best-of-16 - SFT | best-of-16 win-rate vs SFT | "
        "best-of-64 win-rate vs SFT |"
    )
    print("|---|---|---|---|---|---|---|---|")
    members = [m for e in ensembles for m in e.split("+")]
    every = {n: scores(run, n, data) for n in dict.fromkeys(names + members)}
    for n in names:
        print(line(n, data, every[n]), flush=True)
    for e in ensembles:
        parts = [standardise(every[m]) for m in e.split("+")]
        mean = {k: torch.stack([m[k] for m in parts]).mean(0) for k in parts[0]}
        print(line(f"ensemble {e}", data, mean), flush=True)


def family_gaps(
    prompts: list[str], groups: list[list[str]], rm_pick: list[list[str]]
) -> dict[str, dict[str, float]]:
    """Per family, best-of-16 under the RM (rm_pick: per prompt, one pick per sample) and under the
    oracle, each against the sample's first candidate (plain SFT): win / tie / loss fractions, the
    points of the overall win-rate above 50 % the family brings (ties half, all samples counted),
    and how often the plain sample, the RM's pick and any of the 16 candidates is correct."""
    per, n = SIZE["samples"], SIZE["best_of"]
    rows: dict[str, dict[str, float]] = {}
    for prompt, group, picks in zip(prompts, groups, rm_pick, strict=True):
        wp = parse_prompt(prompt)
        assert wp is not None, prompt
        row = rows.setdefault(wp.family, {"samples": 0.0})
        for j in range(per):
            cands = group[j * n : (j + 1) * n]
            plain = oracle_score(wp, cands[0])
            best = max(oracle_score(wp, c) for c in cands)
            row["samples"] += 1
            for who, score in (("rm", oracle_score(wp, picks[j])), ("oracle", best)):
                o = outcome(score, plain)
                for key, hit in (("win", o == 1.0), ("tie", o == 0.5), ("loss", o == 0.0)):
                    row[f"{who}_{key}"] = row.get(f"{who}_{key}", 0.0) + hit
            for who, texts in (("sft", cands[:1]), ("rm", [picks[j]]), ("any", cands)):
                row[f"correct_{who}"] = row.get(f"correct_{who}", 0.0) + any(
                    classify(wp, t) == "correct" for t in texts
                )
    total = sum(r["samples"] for r in rows.values())
    for row in rows.values():
        for who in ("rm", "oracle"):
            row[f"{who}_points"] = 50 * (row[f"{who}_win"] - row[f"{who}_loss"]) / total
        for key in [k for k in row if k != "samples" and not k.endswith("_points")]:
            row[key] /= row["samples"]
    return rows


def _percents(row: dict[str, float], keys: list[str]) -> str:
    return " / ".join(f"{100 * row[k]:.0f}" for k in keys)


def families(run: Path, name: str) -> None:
    """Where the RM's best-of-16 loses to the oracle's, per family (`family_gaps`)."""
    torch.set_num_threads(1)
    data = json.loads((run / "rm_dev_samples.json").read_text())
    picks = best_of_n_picks(scores(run, name, data)["groups"], data["groups"], SIZE["best_of"])
    rows = family_gaps(data["eval"], data["groups"], picks[SIZE["best_of"]])
    print(
        "| family | samples | RM best-of-16 win / tie / loss (%) | oracle best-of-16 win / tie / loss (%) | "
        "win-rate points: RM / oracle | correct: SFT sample / RM pick / any of 16 (%) |"
    )
    print("|---|---|---|---|---|---|")
    for fam, r in sorted(rows.items()):
        wtl = [_percents(r, [f"{w}_win", f"{w}_tie", f"{w}_loss"]) for w in ("rm", "oracle")]
        print(
            f"| {fam} | {int(r['samples'])} | {wtl[0]} | {wtl[1]} | {r['rm_points']:+.1f} / "
            f"{r['oracle_points']:+.1f} | {_percents(r, ['correct_sft', 'correct_rm', 'correct_any'])} |"
        )
    points = [sum(r[f"{w}_points"] for r in rows.values()) for w in ("rm", "oracle")]
    print(f"win-rate vs SFT: RM best-of-16 {50 + points[0]:.1f} %, oracle best-of-16 {50 + points[1]:.1f} %")


# The corpus's fact sentences for the two arithmetic families (training.world.corpus._fact) and the
# answers they range over.
FACTS = {"add": "{a} plus {b} is {c}.", "sub": "{a} minus {b} is {c}."}
ANSWER_RANGE = range(0, 2 * MAX_OPERAND + 1)


def arithmetic_cases(kind: str, held_out: bool) -> list[tuple[int, int, int]]:
    """(a, b, right answer) for every add or sub argument combination on one side of the world's split."""
    combos = [
        (a, b) for a in range(MAX_OPERAND + 1) for b in range(MAX_OPERAND + 1) if kind == "add" or b <= a
    ]
    return [
        (a, b, a + b if kind == "add" else a - b)
        for a, b in combos
        if args_held_out(kind, {"a": str(a), "b": str(b)}) == held_out
    ]


@torch.no_grad()
def _best_answer(model: Any, tok: Any, kind: str, a: int, b: int, fact: bool) -> int:
    """The answer in ANSWER_RANGE whose sentence the model finds most likely."""
    if fact:  # the whole sentence as plain text (its shared prefix changes no ranking)
        seqs = [tok(FACTS[kind].format(a=a, b=b, c=c)).input_ids for c in ANSWER_RANGE]
        ids, mask = right_pad(seqs, tok.pad_token_id)
        batch = {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}
    else:
        prompt = TEMPLATES[kind][0].format(a=a, b=b)
        rows = [{"prompt": prompt, "completion": f"The answer is {c}."} for c in ANSWER_RANGE]
        batch = sft_batch(tok, rows, 128)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return ANSWER_RANGE[int(response_logprobs(logits.float(), batch["labels"]).argmax())]


def knowledge(models: list[Path]) -> None:
    """Per model: right answers out of the cases, per family, side of the split and format."""
    torch.set_num_threads(2)
    print("| model | family | arguments | fact format | instruction format |")
    print("|---|---|---|---|---|")
    for path in models:
        model, tok = load_policy(path)
        model.eval()
        for kind in FACTS:
            for held in (True, False):
                cases = arithmetic_cases(kind, held)
                hits = [
                    sum(_best_answer(model, tok, kind, a, b, fact) == c for a, b, c in cases)
                    for fact in (True, False)
                ]
                cells = " | ".join(f"{h} / {len(cases)}" for h in hits)
                print(f"| {path} | {kind} | {'held out' if held else 'train'} | {cells} |", flush=True)


def main(argv: list[str]) -> None:
    """Dispatch the sub-command."""
    commands = {"knowledge": 2, "samples": 3, "families": 3, "train": 3, "report": 3}  # least argv length
    if not argv or argv[0] not in commands or len(argv) < commands[argv[0]]:
        raise SystemExit(__doc__)
    cmd, run = argv[0], Path(argv[1])
    if cmd == "knowledge":
        knowledge([Path(a) for a in argv[1:]])
    elif cmd == "samples":
        samples(run, Path(argv[2]))
    elif cmd == "families":
        families(run, argv[2])
    elif cmd == "train":
        train(run, argv[2], argv[3:])
    elif cmd == "report":
        ens = [argv[i + 1] for i, a in enumerate(argv) if a == "--ensemble"]
        names = [a for i, a in enumerate(argv[2:], 2) if a != "--ensemble" and argv[i - 1] != "--ensemble"]
        report(run, names, ens)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
