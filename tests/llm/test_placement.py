"""Where models and tensors go: footprints, splitting over GPUs, inputs on the model's device."""

import pytest
import torch
import transformers

from nlpipe.llm import loading
from nlpipe.llm.generation import generate
from nlpipe.llm.loading import footprint, load_model, needs_several_gpus
from nlpipe.llm.scoring import score_batch


def test_footprint_counts_parameters_without_loading(tiny_llama_dir):
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    expected = sum(p.numel() for p in model.parameters())
    found = footprint(tiny_llama_dir, torch.device("cpu"), torch.bfloat16)
    assert (found.format, found.parameters, found.weight_bytes) == ("hf", expected, 2 * expected)


def test_needs_several_gpus_only_with_several_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda index=0: (10 * 2**30, 80 * 2**30))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert not needs_several_gpus(100 * 2**30)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert needs_several_gpus(100 * 2**30)
    assert not needs_several_gpus(2**30)


def test_a_model_too_big_for_one_gpu_is_split(tiny_llama_dir, monkeypatch):
    seen = {}
    original = transformers.AutoModelForCausalLM.from_pretrained

    def spy(folder, **kwargs):
        seen.update(kwargs)
        kwargs.pop("device_map", None)  # no GPUs here: load on the CPU, as accelerate would place it
        return original(folder, **kwargs)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", spy)
    monkeypatch.setattr(loading, "needs_several_gpus", lambda weight_bytes: True)
    loaded = load_model(tiny_llama_dir, torch.device("cuda", 0), torch.float32, allow_split=True)
    assert seen["device_map"] == "auto"
    assert loaded.model.device.type == "cpu"  # not moved again after accelerate placed it
    seen.clear()
    load_model(tiny_llama_dir, torch.device("cpu"), torch.float32, allow_split=True)
    assert "device_map" not in seen


class StopAfterCheck(Exception):
    pass


class MetaModel(torch.nn.Module):
    """Claims to live on the meta device and fails unless every input tensor is there too,
    as a CUDA model fails on CPU inputs ("Expected all tensors to be on the same device")."""

    device = torch.device("meta")

    def forward(self, **inputs):
        for name, value in inputs.items():
            if isinstance(value, torch.Tensor):
                assert value.device == self.device, f"{name} is on {value.device}"
        raise StopAfterCheck


def test_generate_puts_every_input_on_the_model_device():
    with pytest.raises(StopAfterCheck):
        generate(MetaModel(), [[1, 2, 3], [4]], max_gen_len=2, pad_id=0, eos_ids=[5])


def test_scoring_puts_every_input_on_the_model_device():
    with pytest.raises(StopAfterCheck):
        score_batch(MetaModel(), [[1, 2, 3]], [[[4], [5, 6]]], pad_id=0)
