"""Checkpoints are untrusted files: no code runs from them, and a damaged one is one clear error."""

import ast
import json
import os
import pickle
from pathlib import Path

import pytest
import torch

import nlpipe
from nlpipe.errors import ModelError
from nlpipe.llm.loading import load_model, model_config


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


def with_its_own_code(folder: Path, marker: Path) -> Path:
    """`folder` as a model that ships code: config.json's auto_map names evil.py, which creates
    `marker` when imported. Its model_type is one transformers does not know, so transformers
    asks on a terminal whether to run the code instead of using its own Llama."""
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n", encoding="utf-8")
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="evil_llama", auto_map={"AutoConfig": "evil.EvilConfig",
                                                     "AutoModelForCausalLM": "evil.EvilModel"})
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("load", [lambda path: load_model(path, torch.device("cpu"), torch.float32), model_config])
def test_a_model_with_its_own_code_is_refused_even_when_the_terminal_answers_yes(load, tiny_llama_copy, tmp_path,
                                                                                 monkeypatch):
    import transformers.dynamic_module_utils as dynamic_modules

    marker = tmp_path / "pwned"
    model = with_its_own_code(tiny_llama_copy, marker)
    # A user at a terminal answering transformers' "Do you wish to run the custom code? [y/N]".
    monkeypatch.setattr("builtins.input", lambda prompt="": "y")
    monkeypatch.setattr(dynamic_modules, "HF_MODULES_CACHE", str(tmp_path / "modules"))  # were it imported
    with pytest.raises(ModelError, match=r"^E054: .*tiny-llama.*auto_map.*does not run a model's own code"):
        load(model)
    assert not marker.exists()


def _transformers_loads(tree: ast.AST) -> list[ast.Call]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("from_pretrained", "from_config")]


def test_every_transformers_load_in_nlpipe_says_trust_remote_code_false():
    # Left unset, transformers asks on a terminal and runs the code on a "y" (above).
    package = Path(nlpipe.__file__).parent
    loads = [(path.relative_to(package), call) for path in package.rglob("*.py")
             for call in _transformers_loads(ast.parse(path.read_text(encoding="utf-8")))]
    assert len(loads) >= 8  # loading.py's five, gguf.py's two and meta.py's one: the search finds them
    unsafe = [f"{path}:{call.lineno}" for path, call in loads
              if not any(k.arg == "trust_remote_code" and isinstance(k.value, ast.Constant) and k.value.value is False
                         for k in call.keywords)]
    assert unsafe == []


@pytest.mark.parametrize("changes, message", [
    ({"num_hidden_layers": 10_000_000}, "declares num_hidden_layers = 10,000,000 but the weights hold 2 layers"),
    ({"num_hidden_layers": -1}, "num_hidden_layers is -1, not a positive whole number"),
    ({"num_hidden_layers": 3}, "declares num_hidden_layers = 3 but the weights hold 2 layers"),
    ({"hidden_size": 2**40}, "declares hidden_size = 1,099,511,627,776 but the token embedding has shape"),
    ({"hidden_size": "x"}, "hidden_size is 'x'"),
])
@pytest.mark.parametrize("load", [lambda path: load_model(path, torch.device("cpu"), torch.float32), model_config])
def test_a_config_declaring_more_than_the_weights_hold_is_refused_before_building(load, changes, message,
                                                                                   tiny_llama_copy, monkeypatch):
    import transformers

    def never(*args, **kwargs):
        raise AssertionError("a model was built")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", never)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_config", never)
    config = json.loads((tiny_llama_copy / "config.json").read_text())
    config.update(changes)
    (tiny_llama_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match=f"^E052.*config.json.*{message}"):
        load(tiny_llama_copy)
