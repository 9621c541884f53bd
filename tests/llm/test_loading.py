"""nlpipe.llm.loading (and the GGUF cache key in gguf.py): format detection, loading, conversion cache."""

import os
import shutil
from pathlib import Path

import pytest
import torch

from nlpipe.errors import ModelError
from nlpipe.llm import loading
from nlpipe.llm.gguf import gguf_cache_dir
from nlpipe.llm.loading import checkpoint_format, hf_folder, load_model


@pytest.fixture()
def cache(monkeypatch, tmp_path) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("NLPIPE_CACHE", str(root))
    return root


@pytest.fixture()
def fake_convert(monkeypatch, tiny_llama_dir):
    """Replaces convert_gguf in loading.py with a copy of the tiny model; records its calls."""
    calls = []

    def convert(gguf_file, out_dir):
        calls.append((Path(gguf_file), Path(out_dir)))
        shutil.copytree(tiny_llama_dir, out_dir, dirs_exist_ok=True)
        return Path(out_dir)

    monkeypatch.setattr(loading, "convert_gguf", convert)
    return calls


def _error_code(excinfo) -> str:
    return str(excinfo.value).split(":")[0]


def test_hf_folder_is_hf(tiny_llama_dir):
    assert checkpoint_format(tiny_llama_dir) == "hf"


def test_gguf_file_is_gguf(tmp_path):
    gguf = tmp_path / "model.Q4_1.gguf"
    gguf.write_bytes(b"GGUF\x03\x00\x00\x00")
    assert checkpoint_format(gguf) == "gguf"


def test_missing_path(tmp_path):
    with pytest.raises(ModelError) as caught:
        checkpoint_format(tmp_path / "nowhere")
    assert _error_code(caught) == "E013"
    assert str(tmp_path / "nowhere") in str(caught.value)


def test_a_mistyped_path_is_said_not_to_exist_not_to_be_fetched(tmp_path):
    # Only a known model's name is fetched (on first use); a typo has nothing to pull.
    with pytest.raises(ModelError) as caught:
        checkpoint_format(tmp_path / "smollm2-135n")
    assert str(caught.value).startswith(f"E013: model path '{tmp_path / 'smollm2-135n'}' does not exist. Check the path")
    assert "pull" not in str(caught.value)


@pytest.mark.parametrize("missing", ["model.safetensors", "config.json", "tokenizer.json"])
def test_folder_lacking_a_part(tiny_llama_copy, missing):
    if missing == "tokenizer.json":
        # tokenizer_config.json alone also counts as tokenizer files; remove both
        (tiny_llama_copy / "tokenizer_config.json").unlink()
    (tiny_llama_copy / missing).unlink()
    with pytest.raises(ModelError) as caught:
        checkpoint_format(tiny_llama_copy)
    assert _error_code(caught) == "E014"
    assert str(tiny_llama_copy) in str(caught.value)


def test_folder_with_bin_weights_is_hf(tiny_llama_copy):
    (tiny_llama_copy / "model.safetensors").rename(tiny_llama_copy / "pytorch_model.bin")
    assert checkpoint_format(tiny_llama_copy) == "hf"


def test_empty_folder(tmp_path):
    with pytest.raises(ModelError, match="^E014"):
        checkpoint_format(tmp_path)


@pytest.mark.parametrize("name", ["weights.txt", "model.safetensors", "model"])
def test_random_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(os.urandom(64))
    with pytest.raises(ModelError) as caught:
        checkpoint_format(path)
    assert _error_code(caught) == "E014"


def test_load_model_on_cpu_float32(tiny_llama_dir):
    loaded = load_model(tiny_llama_dir, torch.device("cpu"), torch.float32)
    assert loaded.path == tiny_llama_dir
    assert loaded.model.device == torch.device("cpu")
    assert all(p.dtype == torch.float32 for p in loaded.model.parameters())
    assert all(p.device.type == "cpu" for p in loaded.model.parameters())
    assert not loaded.model.training
    assert not any(m.training for m in loaded.model.modules())
    assert loaded.tokenizer.eos_token == "<|im_end|>"
    assert loaded.tokenizer.chat_template


def test_load_model_accepts_str_and_dtype(tiny_llama_dir):
    loaded = load_model(str(tiny_llama_dir), torch.device("cpu"), torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in loaded.model.parameters())


def test_load_model_bad_config_is_e015(tiny_llama_copy):
    (tiny_llama_copy / "config.json").write_text("{ not json")
    with pytest.raises(ModelError) as caught:
        load_model(tiny_llama_copy, torch.device("cpu"), torch.float32)
    assert _error_code(caught) == "E015"


def test_load_model_missing_is_e013(tmp_path):
    with pytest.raises(ModelError, match="^E013"):
        load_model(tmp_path / "missing", torch.device("cpu"), torch.float32)


def test_gguf_cache_dir_changes_with_the_file(tmp_path, cache):
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 60)
    first = gguf_cache_dir(gguf)
    assert gguf_cache_dir(gguf) == first  # stable
    assert first.parent == cache / "gguf"
    assert first.name.startswith("tiny-")

    stat = gguf.stat()
    os.utime(gguf, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))  # same size, newer
    touched = gguf_cache_dir(gguf)
    assert touched != first

    gguf.write_bytes(b"GGUF" + b"\1" * 100)  # new content and size
    os.utime(gguf, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    rewritten = gguf_cache_dir(gguf)
    assert rewritten not in (first, touched)


def test_gguf_cache_dir_differs_per_file(tmp_path, cache):
    a, b = tmp_path / "a" / "m.gguf", tmp_path / "b" / "m.gguf"
    for path in (a, b):
        path.parent.mkdir()
        path.write_bytes(b"GGUF")
    assert gguf_cache_dir(a) != gguf_cache_dir(b)


def test_gguf_cache_dir_default_root(tmp_path, monkeypatch):
    monkeypatch.delenv("NLPIPE_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    assert gguf_cache_dir(gguf).parent == Path.home() / ".cache" / "nlpipe" / "gguf"


def test_hf_folder_returns_hf_folders_unchanged(tiny_llama_dir, fake_convert):
    assert hf_folder(tiny_llama_dir) == tiny_llama_dir
    assert fake_convert == []


def test_hf_folder_converts_gguf_once(tmp_path, cache, fake_convert):
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 60)
    expected = gguf_cache_dir(gguf)

    first = hf_folder(gguf)
    assert first == expected
    assert fake_convert == [(gguf, expected)]
    assert checkpoint_format(first) == "hf"

    assert hf_folder(gguf) == expected
    assert len(fake_convert) == 1  # the cache is reused

    loaded = load_model(gguf, torch.device("cpu"), torch.float32)
    assert loaded.path == expected
    assert len(fake_convert) == 1


def test_hf_folder_reconverts_a_changed_gguf(tmp_path, cache, fake_convert):
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF")
    first = hf_folder(gguf)
    gguf.write_bytes(b"GGUF" + b"\0" * 10)
    second = hf_folder(gguf)
    assert second != first
    assert [out for _, out in fake_convert] == [first, second]


def test_hf_folder_redoes_an_incomplete_cache(tmp_path, cache, fake_convert):
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF")
    target = gguf_cache_dir(gguf)
    target.mkdir(parents=True)  # a folder without config.json is not a finished conversion
    (target / "junk").write_text("x")
    assert hf_folder(gguf) == target
    assert fake_convert == [(gguf, target)]
    assert checkpoint_format(target) == "hf"


def test_convert_gguf_rejects_a_broken_file(tmp_path, cache):
    from nlpipe.llm.gguf import convert_gguf

    gguf = tmp_path / "broken.gguf"
    gguf.write_bytes(b"GGUFjunk")
    with pytest.raises(ModelError) as caught:
        convert_gguf(gguf, tmp_path / "out")
    assert _error_code(caught) == "E015"
    assert str(gguf) in str(caught.value)
    assert not (tmp_path / "out").exists()


def test_load_model_on_a_broken_gguf_leaves_no_cache(tmp_path, cache):
    gguf = tmp_path / "broken.gguf"
    gguf.write_bytes(b"GGUFjunk")
    with pytest.raises(ModelError, match="^E015"):
        load_model(gguf, torch.device("cpu"), torch.float32)
    assert not gguf_cache_dir(gguf).exists()
