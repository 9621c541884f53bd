"""Base LLaMA checkpoints without a chat template (Meta's Llama/Llama 2 base releases, an HF folder
saved from a sentencepiece LlamaTokenizer) answer through the CLI in both modes, identically."""

import json
import shutil

import pytest
from click.testing import CliRunner

from nlpipe.cli import main
from nlpipe.llm.meta import meta_to_hf

from .conftest import REPO
from .llm.test_meta_checkpoint import meta_weights, sentencepiece_model, sp, write_meta_folder  # noqa: F401

TEXT = "Anna built the old mill in 1810."


@pytest.fixture(scope="module")
def folders(tmp_path_factory, meta_weights, sentencepiece_model):  # noqa: F811
    """The same random weights and tokenizer as a Meta folder in 1 and 2 shards, and an HF folder."""
    from transformers import LlamaForCausalLM, LlamaTokenizer

    root = tmp_path_factory.mktemp("templateless")
    meta = {n: write_meta_folder(root / f"meta-{n}" / "llama-tiny", meta_weights, sentencepiece_model, n)
            for n in (1, 2)}
    config, state_dict = meta_to_hf(meta[1])
    model = LlamaForCausalLM(config)
    model.load_state_dict(state_dict)
    model.save_pretrained(root / "hf")
    # Loaded from a folder holding tokenizer.model, as a user converts one (the vocab_file
    # argument alone gives an empty vocabulary in transformers 5).
    shutil.copy(sentencepiece_model, root / "hf" / "tokenizer.model")
    tokenizer = LlamaTokenizer.from_pretrained(root / "hf", add_bos_token=True, legacy=True)
    tokenizer.init_kwargs["legacy"] = True  # Meta's tokenization; else not saved
    assert not tokenizer.chat_template
    tokenizer.save_pretrained(root / "hf")
    return {"meta-1": meta[1], "meta-2": meta[2], "hf": root / "hf"}


def ask(path, question: str, mode: str) -> dict:
    result = CliRunner().invoke(main, [
        "ask", str(REPO / "pipelines" / "qa.cfg"), "--text", TEXT, question, "--json",
        "--components.llama_qa.model.path", str(path), "--components.llama_qa.model.device", "cpu",
        "--components.llama_qa.model.max_new_tokens", "8", "--components.llama_qa.mode", mode],
        catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.slow  # six CLI runs, each building the pipeline
@pytest.mark.parametrize("mode", ["grounded", "generative"])
def test_every_format_gives_the_same_answer(folders, mode, monkeypatch, tmp_path):
    monkeypatch.setenv("NLPIPE_CACHE", str(tmp_path / "cache"))  # Meta folders are converted once here
    answers = {name: ask(path, "Who built the mill?", mode) for name, path in folders.items()}
    assert answers["meta-1"] == answers["meta-2"] == answers["hf"], {k: a["logprob"] for k, a in answers.items()}
    answer = answers["hf"]
    assert "error" not in answer
    if mode == "grounded":  # a span of the text, chosen by scoring
        assert answer["grounded"] and TEXT[answer["start_char"]:answer["end_char"]] == answer["text"]
    else:  # generated: the random model's reply, possibly empty, but generated
        assert answer["generated"] is not None
