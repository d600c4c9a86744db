"""Chat format: templates render prompts for every stage, BOS only at the start, conversation rows."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from tests.training.tiny_models import llama_style_tokenizer
from training.batching import encode_example, sft_batch
from training.chat import (
    DEFAULT_CHAT_TEMPLATE,
    encode_prompt,
    prompt_text,
    render_default,
    row_completion,
    row_prompt,
)
from training.data import group_comparisons

ROOT = Path(__file__).resolve().parents[2]
LLAMA2_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'user' %}{{ '[INST] ' + m['content'] + ' [/INST]' }}"
    "{% else %}{{ ' ' + m['content'] + eos_token }}{% endif %}{% endfor %}"
)


@pytest.mark.parametrize("template", [None, LLAMA2_TEMPLATE], ids=["default-template", "llama2-template"])
def test_llama_style_tokenizer_gets_bos_once_at_the_start_and_labels_cover_completion_and_eos(
    template: str | None,
) -> None:
    tok = llama_style_tokenizer(template)
    completion = "Paris is the capital."
    batch = sft_batch(tok, [{"prompt": "What is the capital of France?", "completion": completion}], 64)
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id
    taught = [t for t in labels if t != -100]
    first = labels.index(taught[0])
    assert labels[first:] == ids[first:]  # the mask is one contiguous run to the end
    assert taught[-1] == tok.eos_token_id and taught.count(tok.eos_token_id) == 1
    assert tok.decode(taught[:-1]).strip() == completion
    assert ids[:first] == encode_prompt(tok, "What is the capital of France?")


def test_own_tokenizer_carries_the_template_and_the_corpus_is_rendered_with_it(micro_base: Path) -> None:
    from training.models import load_tokenizer
    from training.world import make_corpus

    tok = load_tokenizer(micro_base)
    assert tok.chat_template == DEFAULT_CHAT_TEMPLATE
    msgs = [{"role": "user", "content": "What is 1 plus 2?"}, {"role": "assistant", "content": "3."}]
    assert tok.apply_chat_template(msgs, tokenize=False) == render_default(msgs, False, tok.eos_token)
    prompt = tok.apply_chat_template(msgs[:1], add_generation_prompt=True, tokenize=False)
    assert prompt == render_default(msgs[:1], True)
    docs = [d for d in make_corpus(50, seed=1) if d.startswith("Instruction: ")]
    assert docs and all(tok.eos_token in d and "\nResponse: " in d for d in docs)
    # SFT's example is the template's rendering of the same turn, token for token.
    ids, n = encode_example(tok, msgs[0]["content"], msgs[1]["content"], 64)
    assert ids == tok(render_default(msgs, False).rstrip("\n"), add_special_tokens=False)["input_ids"]
    assert tok.decode(ids[:n]) == prompt


def test_conversation_rows_train_like_prompt_rows(micro_base: Path) -> None:
    from training.models import load_tokenizer

    tok = load_tokenizer(micro_base)
    plain = {"prompt": "What is 2 plus 2?", "completion": "4."}
    conv = {"messages": [{"role": "user", "content": "What is 2 plus 2?"}], "completion": "4."}
    full = {"messages": [*conv["messages"], {"role": "assistant", "content": "4."}]}
    a, b, c = (sft_batch(tok, [r], 64) for r in (plain, conv, full))
    assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["labels"], c["labels"])
    assert row_completion(full) == "4." and row_prompt(full) == conv["messages"]
    multi = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "What is 1 plus 1?"},
    ]
    assert prompt_text(multi) == "What is 1 plus 1?"
    pairs = [{"messages": multi, "chosen": "2.", "rejected": r} for r in ("3.", "5.")]
    groups = group_comparisons([], pairs)
    assert len(groups) == 1 and groups[0].prompt == multi and groups[0].pairs == [(0, 1), (0, 2)]
    with pytest.raises(ValueError, match="role"):
        row_prompt({"messages": [{"role": "wizard", "content": "x"}]})


def test_sampler_renders_conversations_through_the_template(micro_base: Path) -> None:
    from training.config import SamplingParams
    from training.generate import Sampler

    sampler = Sampler(micro_base, device="cpu")
    params = SamplingParams(temperature=1.0, max_new_tokens=6, seed=3)
    as_text = sampler.sample(["What is 3 plus 4?"], 2, params)
    as_conv = sampler.sample([[{"role": "user", "content": "What is 3 plus 4?"}]], 2, params)
    assert [c.token_ids for c in as_text[0]] == [c.token_ids for c in as_conv[0]]


def test_core_modules_do_not_import_the_simulated_world() -> None:
    for name in ("batching", "chat", "data", "generate", "importing", "adapters", "checkpoints"):
        path = ROOT / "training" / f"{name}.py"
        if not path.exists():
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                assert not module.startswith("training.world"), f"{name}.py imports {module}"


def test_truncated_prompt_keeps_bos_first() -> None:
    tok = llama_style_tokenizer()
    long_prompt = " ".join(["What is the capital of France?"] * 10)
    ids, n = encode_example(tok, long_prompt, "Paris.", 24)
    assert len(ids) <= 24 and ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    assert ids[-1] == tok.eos_token_id and n == 12
