"""The QA task's prompt side: a Doc's questions, and one model request per question."""

import pytest

from nlpipe.components.task import QATask, QuestionsError, common_prefix
from nlpipe.llm.fake import FakeLlama

TEXT = ("The Eiffel Tower is in Paris. It opened in 1889. Gustave Eiffel's company built it. "
        "Super Bowl 50 was played at Levi's Stadium.")


@pytest.fixture(scope="module")
def qa(fake_nlp):
    return fake_nlp.get_pipe("llama_qa")


def task_of(qa, questions=(), annotate=None) -> QATask:
    """A task with the pipeline's evidence selector and prompt, asking `questions` of every Doc."""
    return QATask(qa.task.evidence, qa.task.prompt, list(questions), annotate or qa.annotate)


def annotated(qa, text: str, questions=None):
    [doc] = qa.annotate([text])
    doc._.questions = questions
    return doc


def test_the_configs_questions_come_first_then_the_docs_stripped_without_blanks_or_repeats(qa):
    task = task_of(qa, ["Where is it?"])
    doc = annotated(qa, TEXT, [" When did it open? ", "Where is it?", "", "   ", "When did it open?", "Who?"])
    assert task.questions_for(doc) == ["Where is it?", "When did it open?", "Who?"]
    assert task.questions_for(annotated(qa, TEXT)) == ["Where is it?"]  # a Doc without questions of its own


@pytest.mark.parametrize("questions, kind", [("Who built it?", "the string 'Who built it?'"), ({"Who?": 1}, "a dict"),
                                             (["Who?", None], "a list holding non-strings"), (5, "a int")])
def test_questions_that_are_not_a_list_of_strings_are_E081_naming_what_they_are(qa, questions, kind):
    with pytest.raises(QuestionsError, match="E081") as caught:
        task_of(qa).questions_for(annotated(qa, TEXT, questions))
    assert kind in str(caught.value)


def test_a_lone_surrogate_in_a_question_is_replaced_and_the_doc_says_so(qa):
    doc = annotated(qa, TEXT, ["Where is the \ud800tower?"])
    assert task_of(qa).questions_for(doc) == ["Where is the \ufffdtower?"]
    assert doc._.qa_warning["type"] == "lone_surrogates"


def test_a_doc_without_text_or_questions_asks_nothing(qa):
    task, fake = task_of(qa), FakeLlama()
    assert task.ask(annotated(qa, "  \n "), ["Where?"], fake) == []
    assert task.ask(annotated(qa, TEXT), [], fake) == []


def test_each_question_gets_a_request_showing_it_and_its_best_evidence(qa):
    fake = FakeLlama()
    doc = annotated(qa, TEXT)
    where, played = task_of(qa).ask(doc, ["Where is the Eiffel Tower?", "Where was Super Bowl 50 played?"], fake)
    assert (where.doc, where.index, where.question.text) == (doc, 0, "Where is the Eiffel Tower?")
    assert (played.index, played.question.text) == (1, "Where was Super Bowl 50 played?")
    assert where.ranked[0][0].text == "The Eiffel Tower is in Paris."  # the best-matching sentence first
    assert played.ranked[0][0].text == "Super Bowl 50 was played at Levi's Stadium."
    for asked in (where, played):
        prompt = fake.tokenizer.decode(asked.request.tokens)
        assert f"Question: {asked.question.text}" in prompt
        assert all(span.text in prompt for span in asked.evidence)


def test_questions_whose_evidence_fits_together_share_one_context(qa):
    fake = FakeLlama()
    first, second = task_of(qa).ask(annotated(qa, TEXT), ["Where is the tower?", "Who built it?"], fake)
    assert first.request.shared == second.request.shared == common_prefix([first.request.tokens,
                                                                           second.request.tokens])
    shared = fake.tokenizer.decode(first.request.tokens[:first.request.shared])
    # The context, computed once; the questions are each prompt's own.
    assert "Levi's Stadium." in shared and "Where is the tower?" not in shared and "Who built it?" not in shared


def test_a_lone_question_shares_the_system_prompt_and_worked_examples_every_document_starts_with(qa):
    fake = FakeLlama()
    [alone] = task_of(qa).ask(annotated(qa, TEXT), ["Where is the tower?"], fake)
    [other] = task_of(qa).ask(annotated(qa, "Lena moved to Porto in 1990."), ["Where did Lena move?"], fake)
    shared = fake.tokenizer.decode(alone.request.tokens[:alone.request.shared])
    assert alone.request.shared == other.request.shared == common_prefix([alone.request.tokens, other.request.tokens])
    assert "Harbour Bridge" in shared and "Eiffel" not in shared and "Where is the tower?" not in shared


def test_the_evidence_is_what_the_window_leaves_after_the_prompt_and_the_answer(qa):
    roomy, tight = FakeLlama(), FakeLlama(context_length=230, max_new_tokens=32)
    doc = annotated(qa, TEXT)
    [wide] = task_of(qa).ask(doc, ["Where is the tower?"], roomy)
    [narrow] = task_of(qa).ask(doc, ["Where is the tower?"], tight)
    assert len(narrow.evidence) < len(wide.evidence)
    assert 0 < len(narrow.request.tokens) <= tight.context_length - tight.max_new_tokens
    assert narrow.evidence[0].text == "The Eiffel Tower is in Paris."  # the best sentence still fits


def test_each_question_is_annotated_once(qa):
    annotated_texts = []

    def counting(texts):
        annotated_texts.extend(texts)
        return qa.annotate(texts)
    task = task_of(qa, annotate=counting)
    task.analyse(["Where is it?", "Who built it?", "Where is it?"])
    task.analyse(["Who built it?", "When?"])
    assert annotated_texts == ["Where is it?", "Who built it?", "When?"]


@pytest.mark.parametrize("prompts, shared", [([[1, 2, 3], [1, 2, 4]], 2), ([[1, 2], [1, 2, 3]], 2),
                                             ([[5, 1], [1, 5]], 0), ([[7, 8], [7, 8]], 2)])
def test_common_prefix_counts_the_leading_ids_all_prompts_share(prompts, shared):
    assert common_prefix(prompts) == shared
