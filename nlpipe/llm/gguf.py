"""Convert a GGUF file into a Hugging Face folder (config, float32 safetensors, tokenizer).

Dequantizing a GGUF file takes tens of seconds; the folder written here loads in well under a
second, so every GGUF file is converted once and the folder reused.
"""

import re
from pathlib import Path

import torch

from ..errors import Errors, ModelError
from ..files import staging_dir
from .cache import cache_dir
from .integrity import loaded_in_full, numbered_0_to, some_of


def gguf_cache_dir(gguf_file: Path) -> Path:
    return cache_dir(gguf_file, "gguf")


def gguf_tensors(gguf_file: Path) -> tuple[dict, dict[str, list[int]]]:
    """(metadata, {tensor name: GGUF shape}) of `gguf_file`, read from its header only."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(gguf_file)
    except Exception as err:  # gguf raises ValueError, struct and numpy errors for a bad header
        raise ModelError(Errors.E015.format(path=gguf_file, reason=err)) from None
    metadata = {name: field.contents() for name, field in reader.fields.items() if not name.startswith("GGUF.")}
    return metadata, {t.name: [int(n) for n in t.shape] for t in reader.tensors}


def check_gguf(gguf_file: Path) -> None:
    """Refuse a GGUF file whose header declares more than its tensors hold, before transformers
    builds a model of the declared size (block_count = 1e6 takes minutes) and fills what is
    missing with random weights."""
    metadata, shapes = gguf_tensors(gguf_file)
    arch = metadata.get("general.architecture")
    blocks, width = metadata.get(f"{arch}.block_count"), metadata.get(f"{arch}.embedding_length")

    def refuse(reason):
        return ModelError(Errors.E052.format(path=gguf_file, reason=reason))

    if not isinstance(blocks, int) or not isinstance(width, int):
        raise refuse(f"its header lacks {arch}.block_count or {arch}.embedding_length")
    present = {int(name.split(".")[1]) for name in shapes if re.match(r"blk\.\d+\.", name)}
    if not numbered_0_to(present, blocks):
        raise refuse(f"its header declares {blocks:,} blocks ({arch}.block_count) but it holds tensors "
                     f"for {len(present):,}")
    per_block = {name.split(".", 2)[2] for name in shapes if re.match(r"blk\.\d+\.", name)}
    expected = ["token_embd.weight", *(f"blk.{i}.{part}" for i in range(blocks) for part in sorted(per_block))]
    missing = [name for name in expected if name not in shapes]
    if missing:
        raise refuse(f"tensors missing: {some_of(missing)}")
    if shapes["token_embd.weight"][0] != width:
        raise refuse(f"its header declares {arch}.embedding_length = {width:,} but token_embd.weight has "
                     f"shape {shapes['token_embd.weight']}")


def convert_gguf(gguf_file: Path, out_dir: Path) -> Path:
    """Dequantize `gguf_file` to float32 and write it as a Hugging Face folder at `out_dir`."""
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_file = Path(gguf_file)
    check_gguf(gguf_file)
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name,
                                                  trust_remote_code=False)  # as in loading.py
        model, loading_info = AutoModelForCausalLM.from_pretrained(
            gguf_file.parent, gguf_file=gguf_file.name, dtype=torch.float32, output_loading_info=True,
            trust_remote_code=False)
    except Exception as err:  # transformers raises many types for a bad file
        raise ModelError(Errors.E015.format(path=gguf_file, reason=err)) from err
    model = loaded_in_full(model, loading_info, gguf_file)
    with staging_dir(out_dir) as tmp_dir:
        config = model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config  # the weights we write are plain float32
        config.save_pretrained(tmp_dir)
        model.generation_config.save_pretrained(tmp_dir)
        save_model(model, str(tmp_dir / "model.safetensors"))
        tokenizer.save_pretrained(tmp_dir)
    return Path(out_dir)
