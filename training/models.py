"""Models: the project's own tokenizer and base LM, policy and reward-model loading, accelerate setup.

Any `transformers` causal LM works by hub id or directory; tests and the demo use a tokenizer and a
small GPT-2-style model built here from a config and pre-trained on the simulated world's corpus.
PAD is always a token distinct from EOS.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
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
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)
from transformers.utils import logging as hf_logging

from training.callbacks import Callbacks
from training.chat import DEFAULT_CHAT_TEMPLATE, EOS_TOKEN, PAD_TOKEN
from training.checkpoints import read_manifest, write_model_dir
from training.config import BaseModelConfig, RuntimeConfig
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

# Named base-model sizes. "x8" has about 8 times the parameters of "tiny" (embeddings included) and is
# pre-trained on the same number of tokens (same steps, batch and sequence length).
BASE_PRESETS: dict[str, dict[str, Any]] = {
    "micro": {
        "n_embd": 32,
        "n_layer": 1,
        "n_head": 2,
        "vocab_size": 512,
        "corpus_docs": 2000,
        "steps": 60,
        "batch_size": 16,
        "seq_len": 64,
    },
    "tiny": {"steps": 1200},
    "x8": {"n_embd": 192, "n_layer": 7, "n_head": 6, "lr": 1e-3, "steps": 1200},
}


def make_accelerator(rt: RuntimeConfig) -> Any:
    """An accelerate.Accelerator for the runtime config: bf16 on GPU, fp32 on CPU by default."""
    from accelerate import Accelerator

    if rt.threads:
        torch.set_num_threads(rt.threads)
    cpu = rt.device == "cpu" or (rt.device == "auto" and not torch.cuda.is_available())
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


def load_frozen_reward_model(path: str | Path, acc: Any) -> RewardModel:
    """A reward model for scoring only: see frozen()."""
    rm: RewardModel = frozen(load_reward_model(path), acc)
    return rm


def load_reward_model_and_tokenizer(path: str | Path) -> tuple[RewardModel, PreTrainedTokenizerBase]:
    """load_reward_model plus its tokenizer."""
    return load_reward_model(path), load_tokenizer(path)


def _pack(tok: PreTrainedTokenizerBase, docs: list[str], seq_len: int) -> torch.Tensor:
    """Concatenate EOS-separated documents and cut into rows: [N, seq_len]."""
    ids: list[int] = []
    for d in docs:
        ids.extend(tok(d)["input_ids"])
        ids.append(tok.eos_token_id)
    n = len(ids) // seq_len
    return torch.tensor(ids[: n * seq_len]).view(n, seq_len)


def build_tiny_base(
    out_dir: str | Path, config: BaseModelConfig | None = None, callbacks: Any = None
) -> Path:
    """Build a tokenizer and GPT-2-style LM from config, pre-train it on the world corpus, save it."""
    from training.world import make_corpus

    cfg = config or BaseModelConfig()
    cbs = Callbacks(callbacks)
    seed_everything(cfg.seed)
    acc = make_accelerator(cfg.runtime)
    docs = make_corpus(cfg.corpus_docs, seed=cfg.seed)
    tok = build_tokenizer(docs, cfg.vocab_size)
    mcfg = GPT2Config(
        vocab_size=len(tok),
        n_positions=cfg.n_positions,
        n_embd=cfg.n_embd,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        bos_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    model = GPT2LMHeadModel(mcfg)
    data = _pack(tok, docs, cfg.seq_len)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 50) * (0.1 + 0.45 * (1 + math.cos(math.pi * s / max(1, cfg.steps))))
    )
    model, opt = acc.prepare(model, opt)
    model.train()
    gen = torch.Generator().manual_seed(cfg.seed)
    loss_val = float("nan")
    for step in range(cfg.steps):
        cbs.check_stop()
        idx = torch.randint(0, data.shape[0], (cfg.batch_size,), generator=gen)
        batch = data[idx].to(acc.device)
        loss = model(input_ids=batch, labels=batch).loss
        acc.backward(loss)
        acc.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        loss_val = 0.9 * loss_val + 0.1 * loss.item() if step else loss.item()
        if step % 10 == 0 or step == cfg.steps - 1:
            cbs.progress("base", step + 1, cfg.steps, {"loss": loss_val})
    unwrapped = acc.unwrap_model(model)
    n_params = sum(p.numel() for p in unwrapped.parameters())

    def write(tmp: Path) -> None:
        unwrapped.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)

    return write_model_dir(
        out_dir,
        write,
        kind="policy",
        parent=None,
        run=None,
        export_batch=None,
        config={"base": cfg.to_dict()},
        metrics={"pretrain_loss": loss_val, "n_params": n_params},
    )


def ensure_base_model(
    cache_dir: str | Path,
    size: str = "tiny",
    callbacks: Any = None,
    runtime: RuntimeConfig | None = None,
    **overrides: Any,
) -> Path:
    """Return the cached base model for a preset size (micro, tiny, x8), building it on first call.

    runtime (device, threads) only says where to build it; it is not part of the cache key."""
    params = {**BASE_PRESETS[size], **overrides}
    cfg = BaseModelConfig(**params)
    from training.world import WORLD_VERSION

    # The corpus comes from the world and is rendered through the chat template, so a change to
    # either must not reuse an old cached base.
    key = {
        **cfg.to_dict(),
        "world_version": WORLD_VERSION,
        "chat_template": hashlib.sha256(DEFAULT_CHAT_TEMPLATE.encode()).hexdigest()[:10],
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    out = Path(cache_dir) / f"base-{size}-{digest}"
    if out.exists() and read_manifest(out):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    # One builder at a time (the web app's worker and a CLI may ask together); the others wait for it.
    with open(out.parent / f".{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if out.exists() and read_manifest(out):
                return out
            if runtime is not None:
                cfg.runtime = runtime
            return build_tiny_base(out, cfg, callbacks)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def count_params(model: nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in model.parameters())
