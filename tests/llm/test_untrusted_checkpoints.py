"""Checkpoints are untrusted files: no code runs from them, and a damaged one is one clear error."""

import os
import pickle

import pytest
import torch

from nlpipe.errors import ModelError
from nlpipe.llm.loading import load_model


class RunsCode:
    """Unpickling this runs a shell command that creates a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_that_runs_code_is_refused(tiny_llama_copy, tmp_path):
    marker = tmp_path / "pwned"
    (tiny_llama_copy / "model.safetensors").unlink()
    with open(tiny_llama_copy / "pytorch_model.bin", "wb") as out:
        pickle.dump({"model.embed_tokens.weight": RunsCode(marker)}, out)
    with pytest.raises(ModelError, match="^E015"):
        load_model(tiny_llama_copy, torch.device("cpu"), torch.float32)
    assert not marker.exists()


def test_a_truncated_safetensors_file_is_one_clear_error(tiny_llama_copy):
    weights = tiny_llama_copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ModelError, match="^E015.*tiny-llama"):
        load_model(tiny_llama_copy, torch.device("cpu"), torch.float32)
