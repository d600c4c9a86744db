"""bench.alignment_rm's pure parts: best-of-n picks (best-of-64 included), and the arithmetic-knowledge
probe, whose cases follow the world's split and whose sentences are the corpus's own fact sentences."""

from __future__ import annotations

import re

import pytest
import torch

from bench.alignment_rm import (
    ANSWER_RANGE,
    FACTS,
    SIZE,
    arithmetic_cases,
    best_of_n_picks,
    family_gaps,
    main,
)
from training.world.corpus import make_corpus
from training.world.families import args_held_out


def test_best_of_n_picks_per_sample_and_over_every_candidate() -> None:
    per, n_max = SIZE["samples"], SIZE["best_of"]
    texts = [f"c{i}" for i in range(per * n_max)]
    s = torch.zeros(per * n_max)
    s[1], s[n_max + 5], s[3 * n_max + 10] = 1.0, 2.0, 3.0  # sample 0: c1; 1: c21 (16+5); 3: c58 (48+10)
    picks = best_of_n_picks(s, [texts], n_max)
    assert picks[1] == [[texts[j * n_max] for j in range(per)]]  # the first candidate of each sample
    assert picks[4][0][0] == "c1" and picks[4][0][1] == texts[n_max]  # c21 is not among sample 1's first 4
    assert picks[n_max][0] == ["c1", f"c{n_max + 5}", texts[2 * n_max], f"c{3 * n_max + 10}"]
    assert picks[per * n_max] == [[f"c{3 * n_max + 10}"] * per]  # the best of all, for every sample


def test_cases_split_every_combination_once_with_the_right_answer() -> None:
    for kind, n in (("add", 100), ("sub", 55)):
        held, train = arithmetic_cases(kind, True), arithmetic_cases(kind, False)
        assert len(held) + len(train) == n and held and train
        assert not {(a, b) for a, b, _ in held} & {(a, b) for a, b, _ in train}
        for a, b, c in held + train:
            assert c == (a + b if kind == "add" else a - b) and c in ANSWER_RANGE
        assert all(args_held_out(kind, {"a": str(a), "b": str(b)}) for a, b, _ in held)


def test_fact_sentences_are_the_corpus_wording_and_cover_held_out_arguments() -> None:
    text = " ".join(make_corpus(3000, seed=0))
    for kind, form in FACTS.items():
        seen = re.findall(form.format(a=r"(\d)", b=r"(\d)", c=r"(\d+)").replace(".", r"\."), text)
        assert seen, f"no {kind} fact in the corpus's wording"
        held = {(a, b) for a, b, _ in arithmetic_cases(kind, True)}
        assert any((int(a), int(b)) in held for a, b, _ in seen)  # the corpus states held-out facts
        assert all(int(c) == (int(a) + int(b) if kind == "add" else int(a) - int(b)) for a, b, c in seen)


def test_family_gaps_count_wins_ties_losses_and_correct_answers_per_sample() -> None:
    per, n = SIZE["samples"], SIZE["best_of"]
    right_a, wrong_a = "The answer is 5.", "The answer is 4."  # 2 plus 3
    right_b, wrong_b = "The answer is 2.", "The answer is 3."  # 1 plus 1
    a = [wrong_a] * (per * n)
    a[5] = right_a  # sample 0 holds one right candidate (not its first), which the RM picks
    b = [wrong_b] * (per * n)
    b[0] = right_b  # sample 0's first candidate (the plain SFT sample) is right; the RM picks a wrong one
    picks = [[right_a] + [wrong_a] * (per - 1), [wrong_b] * per]
    rows = family_gaps(["What is 2 plus 3?", "What is 1 plus 1?"], [a, b], picks)
    row, k = rows["add"], 2 * per
    assert set(rows) == {"add"} and row["samples"] == k
    assert (row["rm_win"], row["rm_tie"], row["rm_loss"]) == (1 / k, (k - 2) / k, 1 / k)
    assert (row["oracle_win"], row["oracle_tie"], row["oracle_loss"]) == (1 / k, (k - 1) / k, 0.0)
    assert row["rm_points"] == 0.0 and row["oracle_points"] == 50 / k  # (wins - losses) / all samples
    assert (row["correct_sft"], row["correct_rm"], row["correct_any"]) == (1 / k, 1 / k, 2 / k)


@pytest.mark.parametrize(
    "argv", [[], ["--help"], ["samples", "RUN"], ["report", "RUN"], ["rank", "RUN", "X"]]
)
def test_a_command_line_short_of_its_arguments_prints_the_usage(argv: list[str]) -> None:
    with pytest.raises(SystemExit, match=re.escape("python -m bench.alignment_rm samples RUN BASE")):
        main(argv)
