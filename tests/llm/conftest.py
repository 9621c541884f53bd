"""The tiny Llama of tests/conftest.py, loaded once per module for the engine's tests."""

import pytest
import torch


@pytest.fixture(scope="module")
def model(tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def tokenizer(tiny_llama_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_llama_dir)


@pytest.fixture()
def forward_shapes(model, monkeypatch) -> list[tuple[int, ...]]:
    """The input_ids shape of every forward pass of `model` from now on, in order."""
    shapes = []
    original = model.forward

    def spy(*args, **kwargs):
        shapes.append(tuple(kwargs["input_ids"].shape))
        return original(*args, **kwargs)
    monkeypatch.setattr(model, "forward", spy)
    return shapes
