"""nlpipe.llm.fake: the scripted model, and the real engine around it."""

import json
import pickle
import subprocess
import sys

import pytest
from spacy.util import registry

from nlpipe.errors import ConfigError
from nlpipe.llm.engine import Completion, FailureKind, Request
from nlpipe.llm.fake import END_OF_TURN, CharTokenizer, FakeLlama

from ..conftest import REPO, fake_overrides


def test_a_prompt_decodes_exactly_one_token_per_character():
    tokenizer = CharTokenizer()
    text = "Où est la tour Eiffel? 🗼"
    ids = tokenizer(text)["input_ids"]
    assert len(ids) == len(text) and tokenizer.decode(ids) == text
    assert tokenizer.decode(ids + [END_OF_TURN]) == text  # the end of a turn is no text
    assert FakeLlama().encode_chat([{"role": "user", "content": "Where?"}]) == tokenizer("Where?\nAnswer:")["input_ids"]


def test_a_prompt_gets_the_reply_of_the_first_key_it_holds_else_the_default():
    fake = FakeLlama(reply="I do not know", replies={"tower": "Paris", "Where": "Rome"}, reply_logprob=-0.5)
    paris, rome, unknown = fake.complete(["Where is the tower?", "Where is it?", "Who?"])
    assert (paris.text, rome.text, unknown.text) == ("Paris", "Rome", "I do not know")
    assert paris == Completion("Paris", fake.encode_text("Paris"), [-0.5] * 5)
    assert paris.mean_logprob == -0.5
    assert fake.passes == [("generate", ["Where is the tower?", "Where is it?", "Who?"])]


def test_an_empty_reply_has_no_tokens():
    [empty] = FakeLlama().complete(["Who?"])
    assert empty == Completion("", [], []) and empty.mean_logprob is None


def test_a_candidate_scores_its_scripted_logprob_for_each_token():
    fake = FakeLlama(score=-2.0, scores={"Paris": -0.25})
    eos = fake.tokenizer.eos_token_id
    [(paris, rome)] = fake.rank([Request(fake.encode_text("Where?"), 0, [fake.encode_text("Paris") + [eos],
                                                                         fake.encode_text("Rome") + [eos]])])
    assert (paris.total_logprob, paris.mean_logprob, paris.token_logprobs) == (-1.5, -0.25, [-0.25] * 6)
    assert (rome.total_logprob, rome.mean_logprob) == (-10.0, -2.0)
    assert fake.passes == [("rank", ["Where?"])]


def test_a_scripted_error_is_raised_by_the_pass_holding_its_prompt():
    fake = FakeLlama(raises={"Rome": "the model broke"})
    assert fake.complete(["Paris?"])[0].text == ""
    with pytest.raises(RuntimeError, match="^the model broke$"):
        fake.complete(["Paris?", "Rome?"])
    with pytest.raises(RuntimeError, match="the model broke"):
        fake.rank([Request(fake.encode_text("Rome?"), 0, [[1]])])


def test_running_out_of_memory_fails_that_prompt_alone_after_the_engines_retries():
    fake = FakeLlama(reply="ok", out_of_memory=["Rome"])
    results = fake.complete(["Paris?", "Rome?", "Bern?"])
    assert [r.text for r in (results[0], results[2])] == ["ok", "ok"]
    assert results[1].kind is FailureKind.OUT_OF_MEMORY and results[1].message.startswith("E021")
    assert "cpu" in results[1].message
    # Retried in halves: the passes that ran are the ones without Rome.
    assert sorted(p for _, prompts in fake.passes for p in prompts) == ["Bern?", "Paris?"]


def test_the_context_window_is_checked_as_for_a_real_model():
    fake = FakeLlama(context_length=20, max_new_tokens=8)
    fits, too_long = fake.complete(["x" * 12, "x" * 13])
    assert isinstance(fits, Completion)
    assert too_long.kind is FailureKind.CONTEXT_OVERFLOW and too_long.message.startswith("E018")
    assert fake.passes == [("generate", ["x" * 12])]


def test_prompts_are_logged_in_the_order_asked_though_run_shortest_first():
    fake = FakeLlama()
    fake.complete(["a longer prompt", "short"])
    assert fake.passes == [("generate", ["a longer prompt", "short"])]
    fake.max_batch_tokens = 1  # a pass per prompt, shortest first
    fake.complete(["a longer prompt", "short"])
    assert fake.passes[1:] == [("generate", ["short"]), ("generate", ["a longer prompt"])]


def test_it_pickles_with_its_script_as_spacy_worker_processes_need():
    fake = pickle.loads(pickle.dumps(FakeLlama(replies={"Where": "Paris"})))
    assert fake.complete(["Where?"])[0].text == "Paris"


def test_it_is_built_from_a_config_block_whose_values_are_checked():
    block = {"@misc": "nlpipe.FakeLlama.v1", "replies": {"Where": "Paris"}, "scores": {"Paris": -0.5},
             "out_of_memory": ["Rome"], "context_length": 100}
    fake = registry.resolve({"model": block})["model"]
    assert isinstance(fake, FakeLlama) and fake.context_length == 100 and fake.path.name == "fake-llama"
    assert fake.complete(["Where?"])[0].text == "Paris"
    with pytest.raises(Exception, match="context_length"):
        registry.resolve({"model": {**block, "context_length": 0}})
    with pytest.raises(Exception, match="reply_logprob"):
        registry.resolve({"model": {**block, "reply_logprob": 0.5}})  # a log-probability is never above 0


def test_a_config_puts_it_in_the_model_slot():
    from nlpipe.config import build_pipeline, load_config

    nlp = build_pipeline(load_config(REPO / "pipelines" / "qa.cfg", fake_overrides(replies={"Why": "For the fair"})))
    assert isinstance(nlp.get_pipe("llama_qa").llm, FakeLlama)
    doc = nlp.make_doc("The tower is in Paris.")
    doc._.questions = ["Why is it there?"]
    assert nlp(doc)._.answers[0]["text"] == "For the fair"
    with pytest.raises(ConfigError, match="E002.*context_length"):
        build_pipeline(load_config(REPO / "pipelines" / "qa.cfg", fake_overrides(context_length="lots")))


@pytest.mark.slow  # a fresh interpreter
def test_the_command_line_finds_it_by_its_registered_name():
    model = json.dumps({"@misc": "nlpipe.FakeLlama.v1", "reply": "Paris"})
    done = subprocess.run([sys.executable, "-m", "nlpipe", "ask", "qa", "Why is it there?", "--text",
                           "The tower is in Paris.", "--components.llama_qa.model", model],
                          capture_output=True, text=True, timeout=300, cwd=REPO.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout == "Paris\n"
