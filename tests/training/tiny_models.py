"""Small Llama-style tokenizers and models built here (no network) for chat-format and import tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

TEXTS = ["Instruction: What is the capital of France?\nResponse: Paris is the capital."] * 4


def llama_style_tokenizer(template: str | None = None, pad: bool = True) -> Any:
    """A Llama-style tokenizer that adds BOS to every text it encodes with special tokens on."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    specials = ["<unk>", "<s>", "</s>"] + (["<|pad|>"] if pad else [])
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    raw.train_from_iterator(TEXTS, trainer)
    tok = LlamaTokenizerFast(
        tokenizer_object=raw,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<|pad|>" if pad else None,
        add_bos_token=True,
        add_eos_token=False,
    )
    tok.chat_template = template
    assert tok("hi")["input_ids"][0] == tok.bos_token_id  # it does add BOS
    return tok


def tiny_llama_dir(path: Path) -> Path:
    """A plain Hugging Face directory: a random 2-layer Llama; its tokenizer has no chat template, no PAD."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tok = llama_style_tokenizer(pad=False)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path
