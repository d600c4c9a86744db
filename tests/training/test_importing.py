"""Importing a local Hugging Face directory: a model directory with a chat template, a PAD and a manifest."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.training.tiny_models import tiny_llama_dir
from training.chat import DEFAULT_CHAT_TEMPLATE
from training.errors import InputError
from training.importing import import_model, resolve_source


def test_import_of_a_plain_hf_dir_adds_template_and_pad_and_samples(tmp_path: Path) -> None:
    from training.checkpoints import read_manifest, verify_model_dir
    from training.config import SamplingParams
    from training.generate import Sampler
    from training.models import load_tokenizer

    src = tiny_llama_dir(tmp_path / "src")
    out = import_model(src, tmp_path / "imported", dtype="float32")
    verify_model_dir(out)
    manifest = read_manifest(out)
    assert manifest["kind"] == "policy" and manifest["config"]["import"]["architecture"] == "LlamaForCausalLM"
    tok = load_tokenizer(out)
    assert tok.chat_template == DEFAULT_CHAT_TEMPLATE  # it had none
    assert tok.pad_token_id is not None and tok.pad_token_id != tok.eos_token_id
    sampler = Sampler(out, device="cpu")
    assert sampler.model.get_input_embeddings().num_embeddings == len(tok)
    conv = [{"role": "user", "content": "What is the capital of France?"}]
    row = sampler.sample([conv], 2, SamplingParams(max_new_tokens=4, seed=0))
    assert len(row[0]) == 2 and all(len(c.token_ids) <= 4 for c in row[0])
    with pytest.raises(FileExistsError):
        import_model(src, out)


def test_resolve_source_explains_what_it_needs(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="neither a model directory"):
        resolve_source(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match=r"no config\.json"):
        resolve_source(tmp_path)
    (tmp_path / "m.gguf").write_bytes(b"GGUF\x03\x00\x00\x00")
    assert resolve_source(tmp_path) == (tmp_path, "m.gguf")
    assert resolve_source(tmp_path / "m.gguf") == (tmp_path, "m.gguf")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_source(tmp_path, "other.gguf")
    # a file that is not GGUF (a saved error page) is named as such; the CLI prints it as one line
    (tmp_path / "m.gguf").write_text("<html>404</html>")
    for source in (tmp_path, tmp_path / "m.gguf"):
        with pytest.raises(InputError, match=r"m\.gguf is not a GGUF file"):
            resolve_source(source)
