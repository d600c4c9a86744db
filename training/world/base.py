"""The demo's base model: a tokenizer and a small GPT-2-style LM built from a config and pre-trained
on the simulated world's corpus (fluent, but it does not follow instructions, as GPT-3 did not).

It lives with the world because it is made from the world; the library's core never imports it.
Unlike the rest of training.world it needs torch, so the package does not import it: callers
import training.world.base.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from training.callbacks import Callbacks
from training.chat import DEFAULT_CHAT_TEMPLATE
from training.checkpoints import read_manifest, write_policy_dir
from training.config import BaseModelConfig, RuntimeConfig
from training.models import build_tokenizer, make_accelerator, pack_documents, seed_everything
from training.world.corpus import make_corpus
from training.world.tasks import WORLD_VERSION

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


def build_tiny_base(
    out_dir: str | Path, config: BaseModelConfig | None = None, callbacks: Any = None
) -> Path:
    """Build a tokenizer and GPT-2-style LM from config, pre-train it on the world corpus, save it."""
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
    data = pack_documents(tok, docs, cfg.seq_len)
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

    return write_policy_dir(
        out_dir,
        unwrapped,
        tok,
        parent=None,
        run=None,
        method=None,
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
