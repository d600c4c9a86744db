"""Models: tokenizers, policy and reward-model loading, accelerate setup.

Any `transformers` causal LM works by hub id or directory; tests and the demo use a tokenizer and a
small GPT-2-style model built from a config and pre-trained on the simulated world's corpus
(training.world.base: the library's core never imports the world). PAD is always distinct from EOS.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)
from transformers.utils import logging as hf_logging

from training.chat import DEFAULT_CHAT_TEMPLATE, EOS_TOKEN, PAD_TOKEN
from training.config import RuntimeConfig
from training.losses import gather_last, position_ids_from_mask

DROPOUT_KEYS = (
    "resid_pdrop",
    "embd_pdrop",
    "attn_pdrop",
    "hidden_dropout",
    "attention_dropout",
    "dropout",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
)

hf_logging.disable_progress_bar()


def context_window(model: Any) -> int | None:
    """The longest sequence a model's position embeddings were made for (its config's
    max_position_embeddings, n_positions or n_ctx); None when its config names none. A wrapper
    holding the language model as `.model` or `.policy` (reward models) is looked through."""
    cfg = getattr(model, "config", None)
    for attr in ("model", "policy"):
        if cfg is None:
            cfg = getattr(getattr(model, attr, None), "config", None)
    for name in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(cfg, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def fit_to_context(max_length: int, model: Any, log: Any = None, what: str = "max_length") -> int:
    """max_length, or the model's context window when that is shorter (said through log(text)): a
    longer sequence would index past the position embeddings (an IndexError deep in the forward)."""
    window = context_window(model)
    if window is None or max_length <= window:
        return max_length
    if log is not None:
        log(f"{what} {max_length} is longer than the model's context window ({window}); using {window}")
    return window


def resolve_device(device: str | None) -> str:
    """A device name: "auto" (or None) is "cuda" when a GPU is present, else "cpu"; others as given."""
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device)


def make_accelerator(rt: RuntimeConfig) -> Any:
    """An accelerate.Accelerator for the runtime config: bf16 on GPU, fp32 on CPU by default."""
    from accelerate import Accelerator

    if rt.threads:
        torch.set_num_threads(rt.threads)
    cpu = resolve_device(rt.device) == "cpu"
    mp = rt.mixed_precision
    if mp == "auto":
        mp = "no" if cpu else "bf16"
    from accelerate.state import AcceleratorState

    state = AcceleratorState._shared_state
    if state and str(state.get("mixed_precision")) != mp:
        # accelerate keeps one precision per process; a later stage (or test) asking for another
        # one gets it (the process group, kept in PartialState, is untouched)
        AcceleratorState._reset_state()
    return Accelerator(cpu=cpu, mixed_precision=mp)


def seed_everything(seed: int) -> None:
    """Seed python and torch RNGs."""
    random.seed(seed)
    torch.manual_seed(seed)


def build_tokenizer(texts: list[str], vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on texts: EOS, a distinct PAD token, the project's chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS_TOKEN, bos_token=EOS_TOKEN, pad_token=PAD_TOKEN, unk_token=None
    )
    fast.padding_side = "left"
    fast.chat_template = DEFAULT_CHAT_TEMPLATE
    return fast


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    """Load a tokenizer; give it a PAD distinct from EOS if it has none."""
    tok = AutoTokenizer.from_pretrained(str(path))
    if tok.pad_token_id is None or tok.pad_token_id == tok.eos_token_id:
        tok.add_special_tokens({"pad_token": PAD_TOKEN})
    tok.padding_side = "left"
    return tok


def set_dropout(config: Any, p: float) -> None:
    """Set every dropout probability a config knows about to p."""
    for key in DROPOUT_KEYS:
        if hasattr(config, key):
            setattr(config, key, p)


def load_policy(
    path: str | Path, dropout: float | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer from a directory or hub id; dropout overrides the config's."""
    tok = load_tokenizer(path)
    cfg = AutoConfig.from_pretrained(str(path))
    if dropout is not None:
        set_dropout(cfg, dropout)
    model = AutoModelForCausalLM.from_pretrained(str(path), config=cfg)
    emb: Any = model.get_input_embeddings()
    if emb.num_embeddings < len(tok):
        model.resize_token_embeddings(len(tok))
    model.config.pad_token_id = tok.pad_token_id
    model.config.eos_token_id = tok.eos_token_id
    return model, tok


class RewardModel(nn.Module):
    """A sequence-classification model used as a scalar reward (or value) function.

    `forward(input_ids, attention_mask) -> [B]` reads the score at the last real token (the last
    position whose attention mask is 1: with left-padded prompts and right-padded responses that
    is the last response token) and adds `bias`, which centres labeler demonstrations at 0.
    `forward(..., per_token=True)` gives the score at every position, bias included: the value model
    reads it through forward, so a DDP-wrapped value model works and starts at the RM's scale.
    """

    def __init__(self, model: PreTrainedModel, bias: float = 0.0) -> None:
        super().__init__()
        self.model = model
        self.bias = float(bias)

    @property
    def config(self) -> Any:
        """The wrapped model's config."""
        return self.model.config

    def token_values(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Score at every position, bias included: [B, T] (the value model reads it)."""
        backbone = getattr(self.model, self.model.base_model_prefix)
        hidden = backbone(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids_from_mask(attention_mask),
        ).last_hidden_state  # [B, T, H]
        head: Any = self.model.score
        return head(hidden.to(head.weight.dtype)).squeeze(-1).float() + self.bias  # [B, T]

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, per_token: bool = False
    ) -> torch.Tensor:
        """Score per sequence at its last real token, plus bias: [B]; per_token=True: [B, T] (for DDP)."""
        values = self.token_values(input_ids, attention_mask)
        return values if per_token else gather_last(values, attention_mask)

    def save_files(self, out: Path, tokenizer: PreTrainedTokenizerBase) -> None:
        """Write HF files (safetensors) with reward_bias stored in config.json."""
        self.model.config.reward_bias = self.bias
        self.model.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)


def reward_model_from_lm(
    path: str | Path, dropout: float = 0.0
) -> tuple[RewardModel, PreTrainedTokenizerBase]:
    """A fresh reward model: the LM at path with its unembedding replaced by a scalar head."""
    tok = load_tokenizer(path)
    cfg = AutoConfig.from_pretrained(str(path), num_labels=1)
    set_dropout(cfg, dropout)
    cfg.pad_token_id = tok.pad_token_id
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the fresh scalar head is expected to be missing from the LM checkpoint
    try:
        model = AutoModelForSequenceClassification.from_pretrained(str(path), config=cfg)
    finally:
        hf_logging.set_verbosity(verbosity)
    with torch.no_grad():
        model.score.weight.normal_(0.0, 1.0 / math.sqrt(cfg.hidden_size + 1))
    return RewardModel(model), tok


def load_reward_model(path: str | Path, dropout: float = 0.0) -> RewardModel:
    """Load a reward model directory written by run_reward (HF sequence-classification + reward_bias)."""
    cfg = AutoConfig.from_pretrained(str(path))
    set_dropout(cfg, dropout)
    model = AutoModelForSequenceClassification.from_pretrained(str(path), config=cfg)
    return RewardModel(model, bias=float(getattr(cfg, "reward_bias", 0.0)))


def fresh_copy(model: Any, state: dict[str, torch.Tensor] | None) -> Any:
    """A new CPU model of the same architecture holding state (the live model's own weights when None)."""
    if isinstance(model, RewardModel):
        inner = AutoModelForSequenceClassification.from_config(model.model.config)
        copy: Any = RewardModel(inner, bias=model.bias)
    else:
        copy = AutoModelForCausalLM.from_config(model.config)
    copy.load_state_dict(state if state is not None else model.state_dict())
    return copy.eval()


def frozen_dtype(acc: Any) -> torch.dtype:
    """The dtype of models that are never trained (reference, reward): bf16 when the run is bf16 on a GPU."""
    on_gpu = torch.device(acc.device).type == "cuda"
    return torch.bfloat16 if on_gpu and str(acc.mixed_precision) == "bf16" else torch.float32


def frozen(model: Any, acc: Any) -> Any:
    """A model in eval mode, without gradients, on the accelerator's device in frozen_dtype(acc)."""
    return model.eval().requires_grad_(False).to(acc.device, dtype=frozen_dtype(acc))


def load_scoring_model(path: str | Path) -> Any:
    """A reward model directory for scoring (forward(ids, mask) -> [B]): a scalar-head RewardModel,
    or a DPO policy with its reference (training.implicit)."""
    from training.implicit import is_implicit, load_implicit_reward_model

    return load_implicit_reward_model(path) if is_implicit(path) else load_reward_model(path)


def load_frozen_reward_model(path: str | Path, acc: Any) -> Any:
    """A reward model (scalar or implicit) for scoring only: see frozen()."""
    return frozen(load_scoring_model(path), acc)


def load_reward_model_and_tokenizer(path: str | Path) -> tuple[Any, PreTrainedTokenizerBase]:
    """load_scoring_model plus its tokenizer."""
    return load_scoring_model(path), load_tokenizer(path)


def pack_documents(tok: PreTrainedTokenizerBase, docs: list[str], seq_len: int) -> torch.Tensor:
    """Concatenate EOS-separated documents and cut into rows: [N, seq_len]."""
    ids: list[int] = []
    for d in docs:
        ids.extend(tok(d)["input_ids"])
        ids.append(tok.eos_token_id)
    n = len(ids) // seq_len
    return torch.tensor(ids[: n * seq_len]).view(n, seq_len)


def count_params(model: nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in model.parameters())
