"""QAPrompt: chat messages built from evidence sentences, their entities and the question."""

import pytest
import spacy

from nlpipe.components.prompting import (DEFAULT_CONTEXT, DEFAULT_EXAMPLES, DEFAULT_QUESTION, DEFAULT_SYSTEM, QAPrompt,
                                        make_qa_prompt, make_qa_prompt_v1)
from nlpipe.config import build_pipeline, load_config
from nlpipe.errors import ConfigError
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
    prompt = make_qa_prompt_v1(system="Be brief.", context_template="C: {context} | E: {entities} | ",
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
    assert spacy.registry.misc.get("nlpipe.QAPrompt.v1") is make_qa_prompt_v1
    assert spacy.registry.misc.get("nlpipe.QAPrompt.v2") is make_qa_prompt


def test_worked_examples_come_before_the_document(evidence):
    messages = make_qa_prompt().messages("Where is the tower?", evidence)
    assert [m["role"] for m in messages] == ["system"] + ["user", "assistant"] * len(DEFAULT_EXAMPLES) + ["user"]
    for (context, question, answer), (asked, replied) in zip(DEFAULT_EXAMPLES, zip(messages[1::2], messages[2::2])):
        assert asked["content"] == DEFAULT_CONTEXT.format(context=context) + DEFAULT_QUESTION.format(question=question)
        assert replied["content"] == answer
    # The document's turn is what v1 renders, after the examples.
    assert messages[-1] == make_qa_prompt_v1().messages("Where is the tower?", evidence)[-1]
    assert make_qa_prompt(examples=[]).messages("Where?", evidence) == QAPrompt().messages("Where?", evidence)


def test_worked_examples_keep_the_shared_prefix(evidence):
    prompt = make_qa_prompt(examples=[("Ann met Bo in Oslo.", "Where did they meet?", "Oslo")])
    first, second = (prompt.messages(q, evidence) for q in ("Where?", "When did it open?"))
    assert first[:-1] == second[:-1]
    assert first[1]["content"] == "Context: Ann met Bo in Oslo.\n\nQuestion: Where did they meet?\nShort answer:"


def test_worked_examples_through_the_config(qa_overrides):
    config = load_config(REPO / "pipelines" / "qa.cfg", {**qa_overrides,
                         "components.llama_qa.prompt.examples": [["Ann met Bo in Oslo.", "Where?", "Oslo"]]})
    assert build_pipeline(config).get_pipe("llama_qa").task.prompt.examples == [("Ann met Bo in Oslo.", "Where?", "Oslo")]
    default = build_pipeline(load_config(REPO / "pipelines" / "qa.cfg", qa_overrides)).get_pipe("llama_qa")
    assert default.task.prompt.examples == [tuple(example) for example in DEFAULT_EXAMPLES]


def test_a_worked_example_without_its_answer_is_a_config_error(qa_overrides):
    config = load_config(REPO / "pipelines" / "qa.cfg", {**qa_overrides,
                         "components.llama_qa.prompt.examples": [["Ann met Bo in Oslo.", "Where?"]]})
    with pytest.raises(ConfigError, match=r"prompt\] examples: example 1 is not \[context, question, answer\]"):
        build_pipeline(config)


def test_worked_examples_never_crowd_out_the_document(qa_overrides):
    """The tiny model's 512-token window cannot hold the default examples (its tokenizer spends
    many tokens on them) and an evidence budget of 256 tokens: the prompt goes without them.
    One short example fits, and is shown."""
    def rendered(examples):
        overrides = {**qa_overrides, "components.llama_qa.evidence.max_tokens": 256,
                     **({"components.llama_qa.prompt.examples": examples} if examples else {})}
        qa = build_pipeline(load_config(REPO / "pipelines" / "qa.cfg", overrides)).get_pipe("llama_qa")
        doc = qa._nlp("Paris is in France. It is a large city.")
        asked = qa.task.ask(doc, ["Where is Paris?", "What is Paris?"], qa.llm)
        return [qa.llm.tokenizer.decode(a.request.tokens) for a in asked]
    crowded = rendered(None)
    assert all("Paris is in France. It is a large city." in text and "Harbour Bridge" not in text for text in crowded)
    shown = rendered([["Ann met Bo in Oslo.", "Where did they meet?", "Oslo"]])
    assert all("Ann met Bo in Oslo." in text and "Paris is in France. It is a large city." in text for text in shown)
