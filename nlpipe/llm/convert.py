"""Turn checkpoints in other formats into a Hugging Face folder (config, safetensors, tokenizer).

Dequantizing a GGUF file takes tens of seconds; the folder written here loads in well under
one, so every GGUF is converted once and the folder reused.
"""

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import torch

from ..errors import Errors, ModelError


def gguf_cache_dir(gguf_file: Path) -> Path:
    """Where the converted copy of `gguf_file` lives; a changed file gets a new folder."""
    stat = gguf_file.stat()
    key = f"{gguf_file.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    root = Path(os.environ.get("NLPIPE_CACHE", Path.home() / ".cache" / "nlpipe"))
    return root / "gguf" / f"{gguf_file.stem}-{digest}"


def convert_gguf(gguf_file: Path, out_dir: Path) -> Path:
    """Dequantize `gguf_file` to float32 and write it as a Hugging Face folder at `out_dir`."""
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_file = Path(gguf_file)
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf_file.parent, gguf_file=gguf_file.name, dtype=torch.float32)
    except Exception as err:  # transformers raises many types for a bad file
        raise ModelError(Errors.E015.format(path=gguf_file, reason=err)) from err
    # Write next to the destination, then rename: an interrupted conversion never leaves
    # a half-written folder that a later run would take for a good one.
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        config = model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config  # the weights we write are plain float32
        config.save_pretrained(tmp_dir)
        model.generation_config.save_pretrained(tmp_dir)
        save_model(model, str(tmp_dir / "model.safetensors"))
        tokenizer.save_pretrained(tmp_dir)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp_dir.rename(out_dir)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return out_dir
