"""Load a causal LM and its tokenizer from a Hugging Face folder, a GGUF file or a Meta Llama folder.

Every transformers load says trust_remote_code=False: left unset, transformers asks on a
terminal whether to run code a model folder ships, and runs it on a "y".
"""

import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch

from ..errors import Errors, ModelError, first_line
from .gguf import convert_gguf, gguf_cache_dir
from .integrity import loaded_in_full, numbered_0_to
from .meta import (META_PARAMS, META_SHARDS, META_TOKENIZER, convert_meta, meta_cache_dir, meta_config, read_params,
                   read_sentencepiece)

WEIGHT_PATTERNS = ("*.safetensors", "*.bin")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: object
    path: Path

    @cached_property
    def context_length(self) -> int:
        """The tokens the model attends over, as its config.json declares them. transformers fills
        a missing max_position_embeddings with its class default (LlamaConfig: 2048), which need
        not be the window the model was trained with: refused (E056) rather than guessed."""
        if read_hf_config(self.path).get("max_position_embeddings") is None:
            raise ModelError(Errors.E056.format(path=self.path / "config.json"))
        return int(self.model.config.max_position_embeddings)


def checkpoint_format(path: Path) -> str:
    """'hf', 'gguf' or 'meta', judged from the files; raises ModelError for anything else."""
    if not path.exists():
        raise ModelError(Errors.E013.format(path=path))
    if path.is_file() and path.suffix == ".gguf":
        return "gguf"
    if path.is_dir():
        has_config = (path / "config.json").is_file()
        has_weights = any(any(path.glob(p)) for p in WEIGHT_PATTERNS)
        has_tokenizer = any((path / f).is_file() for f in TOKENIZER_FILES)
        if has_config and has_weights and has_tokenizer:
            config = read_hf_config(path)
            refuse_own_code(path, config)
            check_hf_sizes(path, config)
            return "hf"
        if is_meta_folder(path):
            return "meta"
    raise ModelError(Errors.E014.format(path=path))


def read_hf_config(folder: Path) -> dict:
    """The folder's config.json as a dict; {} when it cannot be read as one (transformers then
    says what is wrong with it, E015)."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    return config if isinstance(config, dict) else {}


def refuse_own_code(folder: Path, config: dict) -> None:
    """E054 for a folder whose config.json names code of its own (auto_map): a model is data,
    and its files come from anyone."""
    if config.get("auto_map"):
        raise ModelError(Errors.E054.format(path=folder))


LAYER_NAME = re.compile(r"(?:^|\.)(?:layers|h|blocks)\.(\d+)\.")


def safetensors_shapes(folder: Path) -> dict[str, list[int]] | None:
    """{tensor name: shape} of the folder's safetensors files, from their headers only; None where
    there are none or one cannot be read (transformers then says what is wrong, E015)."""
    from safetensors import safe_open

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    shapes = {}
    try:
        for file in files:
            with safe_open(str(file), framework="pt") as weights:
                for name in weights.keys():
                    shapes[name] = list(weights.get_slice(name).get_shape())
    except Exception:  # safetensors raises its own error types for a damaged header
        return None
    return shapes


def check_hf_sizes(folder: Path, config: dict) -> None:
    """E052 for a config.json whose sizes the weights do not have, before transformers builds a
    model of the declared size (num_hidden_layers = 1e7 takes minutes and gigabytes; -1 raises)."""

    def refuse(reason):
        return ModelError(Errors.E052.format(path=folder / "config.json", reason=reason))

    for key in ("num_hidden_layers", "hidden_size", "vocab_size", "intermediate_size",
                "num_attention_heads", "num_key_value_heads", "max_position_embeddings"):
        value = config.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise refuse(f"its {key} is {value!r}, not a positive whole number")
    shapes = safetensors_shapes(folder)
    if shapes is None:
        return
    layers = config.get("num_hidden_layers")
    present = {int(m.group(1)) for m in map(LAYER_NAME.search, shapes) if m}
    if isinstance(layers, int) and present and not numbered_0_to(present, layers):
        raise refuse(f"it declares num_hidden_layers = {layers:,} but the weights hold {len(present):,} layers")
    width = config.get("hidden_size")
    embedding = next((shapes[name] for name in shapes if name.endswith("embed_tokens.weight")), None)
    if isinstance(width, int) and embedding and len(embedding) == 2 and embedding[1] != width:
        raise refuse(f"it declares hidden_size = {width:,} but the token embedding has shape {embedding}")


def is_meta_folder(path: Path) -> bool:
    """Laid out as Meta ships Llama and Llama 2: params.json, consolidated.NN.pth, tokenizer.model."""
    return ((path / META_PARAMS).is_file() and (path / META_TOKENIZER).is_file()
            and any(path.glob(META_SHARDS)))


def hf_folder(path: Path) -> Path:
    """The Hugging Face folder for `path`, converting (once) a GGUF file or a Meta folder."""
    kind = checkpoint_format(path)
    if kind == "hf":
        return path
    if kind == "gguf":
        cached, convert = gguf_cache_dir(path), convert_gguf
    else:
        cached, convert = meta_cache_dir(path), convert_meta
    if not (cached / "config.json").is_file():  # absent or left unfinished: convert (again)
        convert(path, cached)
    return cached


def model_config(path: Path):
    """The transformers config of a checkpoint in any supported format, without its weights."""
    from transformers import AutoConfig

    kind = checkpoint_format(path)
    if kind == "hf":
        return AutoConfig.from_pretrained(path, trust_remote_code=False)
    if kind == "gguf":
        return AutoConfig.from_pretrained(path.parent, gguf_file=path.name, trust_remote_code=False)
    params, sentencepiece = read_params(path), read_sentencepiece(path)
    vocab_size = params["vocab_size"] if params["vocab_size"] > 0 else sentencepiece.vocab_size()
    return meta_config(params, vocab_size, sentencepiece, torch.float32)


def parameter_count(config) -> int:
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):  # shapes only: no memory, no initialisation
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=False)
    return sum(p.numel() for p in model.parameters())  # tied weights are one parameter


@dataclass
class Footprint:
    format: str
    parameters: int
    dtype: torch.dtype
    device: torch.device
    weight_bytes: int


def footprint(path: Path, device: torch.device, dtype: torch.dtype) -> Footprint:
    """What loading `path` on `device` in `dtype` would take."""
    path = Path(path)
    parameters = parameter_count(model_config(path))
    return Footprint(checkpoint_format(path), parameters, dtype, device, parameters * dtype.itemsize)


def needs_several_gpus(weight_bytes: int) -> bool:
    """True when the weights (plus headroom for activations and the KV cache) exceed the
    first GPU's free memory and more GPUs are there to share them."""
    if not torch.cuda.is_available() or torch.cuda.device_count() < 2:
        return False
    free_bytes, _ = torch.cuda.mem_get_info(0)
    return weight_bytes * 1.2 > free_bytes


def load_model(path: Path, device: torch.device, dtype: torch.dtype, allow_split: bool = False) -> LoadedModel:
    """Load onto `device`; with `allow_split` (device "auto"), a model too big for one GPU is
    spread over all of them (transformers' device_map="auto")."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = hf_folder(Path(path))
    split = allow_split and device.type == "cuda" and needs_several_gpus(
        parameter_count(model_config(folder)) * dtype.itemsize)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
        model, loading_info = AutoModelForCausalLM.from_pretrained(
            folder, dtype=dtype, output_loading_info=True, **({"device_map": "auto"} if split else {}),
            trust_remote_code=False)
    except Exception as err:  # transformers, safetensors and torch each raise their own types
        raise ModelError(Errors.E015.format(path=path, reason=first_line(err))) from err
    model = loaded_in_full(model, loading_info, folder)
    if not split:
        model.to(device)  # a split model's inputs go to model.device, its first shard
    model.eval()
    return LoadedModel(model=model, tokenizer=tokenizer, path=folder)
