"""Load a causal LM and its tokenizer from a Hugging Face folder or a GGUF file onto a device."""

from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import Errors, ModelError
from .convert import convert_gguf, gguf_cache_dir

WEIGHT_PATTERNS = ("*.safetensors", "*.bin")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: object
    path: Path


def checkpoint_format(path: Path) -> str:
    """'hf' or 'gguf', judged from the files; raises ModelError for anything else."""
    if not path.exists():
        raise ModelError(Errors.E013.format(path=path))
    if path.is_file() and path.suffix == ".gguf":
        return "gguf"
    if path.is_dir():
        has_config = (path / "config.json").is_file()
        has_weights = any(any(path.glob(p)) for p in WEIGHT_PATTERNS)
        has_tokenizer = any((path / f).is_file() for f in TOKENIZER_FILES)
        if has_config and has_weights and has_tokenizer:
            return "hf"
    raise ModelError(Errors.E014.format(path=path))


def hf_folder(path: Path) -> Path:
    """The Hugging Face folder for `path`, converting (once) when it is a GGUF file."""
    if checkpoint_format(path) == "hf":
        return path
    cached = gguf_cache_dir(path)
    if not (cached / "config.json").is_file():
        convert_gguf(path, cached)
    return cached


def load_model(path: Path, device: torch.device, dtype: torch.dtype) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = hf_folder(Path(path))
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
    except (OSError, ValueError, RuntimeError) as err:
        raise ModelError(Errors.E015.format(path=path, reason=err)) from err
    model.to(device)
    model.eval()
    return LoadedModel(model=model, tokenizer=tokenizer, path=folder)
