"""QAPrompt: chat messages built from evidence sentences, their entities and the question."""

import pytest
import spacy

from nlpipe.components.prompting import DEFAULT_CONTEXT, DEFAULT_QUESTION, DEFAULT_SYSTEM, QAPrompt, make_qa_prompt
from nlpipe.config import build_pipeline, load_config
from nlpipe.llm.engine import Completion

REPO = __import__("pathlib").Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def evidence(en_nlp):
    doc = en_nlp("The Eiffel Tower is in Paris. It opened in 1889. Nothing else here.")
    return list(doc.sents)[:2]


def test_messages_have_system_and_user(evidence):
    messages = QAPrompt().messages("  Where is the tower?  ", evidence)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"] == DEFAULT_SYSTEM
    user = messages[1]["content"]
    assert "Context: The Eiffel Tower is in Paris. It opened in 1889.\n" in user
    assert "Nothing else here" not in user
    assert "Question: Where is the tower?\n" in user
    assert user.endswith("Short answer:")


ENTITY_CONTEXT = "Context: {context}\nNamed entities: {entities}\n"


def test_entities_are_listed_with_labels(evidence):
    user = QAPrompt(context_template=ENTITY_CONTEXT).messages("Where?", evidence)[1]["content"]
    ents = [e for s in evidence for e in s.ents]
    assert ents, "the spaCy model finds entities here"
    listed = "; ".join(f"{e.text} ({e.label_})" for e in ents)
    assert f"Named entities: {listed}\n" in user
    assert "1889 (DATE)" in user


def test_no_entities_and_no_evidence():
    doc = spacy.blank("en")("cats sleep")
    user = QAPrompt(context_template=ENTITY_CONTEXT).messages("Why?", [doc[:]])[1]["content"]
    assert "Named entities: none" in user and "Context: cats sleep" in user
    assert "Named entities" not in QAPrompt().messages("Why?", [doc[:]])[1]["content"]  # not by default
    user = QAPrompt().messages("Why?", [])[1]["content"]
    assert user == DEFAULT_CONTEXT.format(context="", entities="none") + DEFAULT_QUESTION.format(question="Why?")


def test_the_context_part_comes_first_and_is_shared(evidence):
    prompt = QAPrompt()
    first, second = (prompt.messages(q, evidence)[1]["content"] for q in ("Where?", "When did it open?"))
    assert first.endswith(prompt.question_part("Where?")) and second.endswith(prompt.question_part("When did it open?"))
    assert first[:-len(prompt.question_part("Where?"))] == second[:-len(prompt.question_part("When did it open?"))]


def test_custom_template_and_system(evidence):
    prompt = make_qa_prompt(system="Be brief.", context_template="C: {context} | E: {entities} | ",
                            question_template="Q: {question}")
    messages = prompt.messages("When?", evidence[1:])
    assert messages == [{"role": "system", "content": "Be brief."},
                        {"role": "user", "content": "C: It opened in 1889. | E: 1889 (DATE) | Q: When?"}]


def test_custom_template_through_the_config(qa_overrides):
    overrides = {**qa_overrides, "components.llama_qa.prompt.context_template": "ABOUT {context} ",
                 "components.llama_qa.prompt.question_template": "ASK {question}",
                 "components.llama_qa.prompt.system": "SYS"}
    nlp = build_pipeline(load_config(REPO / "pipelines" / "qa.cfg", overrides))
    qa = nlp.get_pipe("llama_qa")
    assert qa.task.prompt.question_template == "ASK {question}" and qa.task.prompt.system == "SYS"
    prompts = []

    def complete(batch):
        prompts.extend(batch)
        return [Completion("Paris", [1], [-0.1]) for _ in batch]
    qa.llm.complete = complete
    qa.mode = "generative"  # grounded mode would score candidates of this span question instead
    doc = nlp.make_doc("Paris is in France.")
    doc._.questions = ["Where is Paris?"]
    nlp(doc)
    assert len(prompts) == 1
    rendered = qa.llm.tokenizer.decode(prompts[0].tokens)
    assert "<|im_start|>system\nSYS<|im_end|>" in rendered
    assert "<|im_start|>user\nABOUT Paris is in France. ASK Where is Paris?<|im_end|>" in rendered
    assert rendered.endswith("<|im_start|>assistant\n")


def test_registered():
    assert spacy.registry.misc.get("nlpipe.QAPrompt.v1") is make_qa_prompt
