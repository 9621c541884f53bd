"""Answers on the Doc: records in `doc._.answers`, spans in `doc.spans["answers"]`, the spans' extensions."""

import pytest
from spacy.tokens import DocBin

from nlpipe.components.answers import SPAN_KEY, Answer, answered, register_extensions, set_answer_records, set_answers

TEXT = "The Eiffel Tower is in Paris. It opened in 1889."
RECORD_KEYS = ["question", "question_index", "text", "start_char", "end_char", "grounded", "confidence", "evidence",
               "evidence_start_char", "evidence_end_char", "logprob", "generated", "answerable", "no_answer"]


@pytest.fixture()
def doc(blank_nlp):
    return blank_nlp(TEXT)


def span_answer(doc, index: int, text: str, **fields) -> Answer:
    start = doc.text.index(text)
    return Answer(f"Question {index}?", index, text, (start, start + len(text)), evidence=list(doc.sents)[0], **fields)


def test_a_span_answer_records_its_offsets_and_its_evidence(doc):
    record = span_answer(doc, 0, "Paris", confidence=0.75, logprob=-0.5).record()
    assert list(record) == RECORD_KEYS  # no "alternatives" nor "error" unless there are some
    assert record["text"] == "Paris" and (record["start_char"], record["end_char"]) == (23, 28)
    assert record["grounded"] is True and record["answerable"] is True
    assert (record["evidence"], record["evidence_start_char"], record["evidence_end_char"]) == (
        "The Eiffel Tower is in Paris.", 0, 29)
    assert (record["confidence"], record["logprob"], record["generated"]) == (0.75, -0.5, None)


def test_a_failed_answer_records_its_error_and_no_answerability():
    record = Answer("Where?", 1, error={"type": "out_of_memory", "message": "E021: ..."}).record()
    assert record["error"] == {"type": "out_of_memory", "message": "E021: ..."}
    assert record["answerable"] is None and record["grounded"] is False
    assert record["start_char"] is record["evidence"] is record["evidence_start_char"] is None


def test_no_answer_and_alternatives_are_recorded_as_given():
    alternatives = [{"text": "Paris", "start_char": 23, "end_char": 28, "confidence": 0.6}]
    record = Answer("Where?", 0, answerable=False, confidence=0.9, alternatives=alternatives, no_answer=0.9).record()
    assert (record["answerable"], record["confidence"], record["no_answer"], record["text"]) == (False, 0.9, 0.9, "")
    assert record["alternatives"] == alternatives and "error" not in record


def test_set_answers_writes_records_and_a_span_for_each_span_answer(doc):
    free = Answer("Why?", 1, "For the fair", generated="For the fair")
    set_answers(doc, [span_answer(doc, 0, "Paris"), free, span_answer(doc, 2, "1889")])
    assert [r["question_index"] for r in doc._.answers] == [0, 1, 2]
    spans = doc.spans[SPAN_KEY]
    assert [(s.text, s.label_, s.id) for s in spans] == [("Paris", "Q1", 0), ("1889", "Q3", 2)]
    set_answers(doc, [free])  # replaced, not added to
    assert len(doc._.answers) == 1 and len(doc.spans[SPAN_KEY]) == 0


def test_answered_tells_a_doc_with_no_answers_set_from_one_never_answered(doc):
    assert not answered(doc) and doc._.answers == []
    set_answers(doc, [])
    assert answered(doc) and doc._.answers == []


def test_records_read_back_become_spans_covering_the_tokens_their_offsets_fall_in(doc):
    record = {**Answer("Where?", 0).record(), "text": "ari", "start_char": 24, "end_char": 27}
    set_answer_records(doc, [record])
    [span] = doc.spans[SPAN_KEY]
    assert span.text == "Paris" and doc._.answers[0]["text"] == "ari"  # the record stays exact


def test_each_answer_span_reads_the_record_of_its_own_question(doc):
    set_answers(doc, [span_answer(doc, 0, "Paris", confidence=0.8), span_answer(doc, 1, "Paris", confidence=0.3),
                      Answer("Why?", 2, "For the fair")])
    first, second = doc.spans[SPAN_KEY]
    assert (first.start, first.end) == (second.start, second.end)  # the same words...
    assert (first._.question, first._.question_index, first._.confidence) == ("Question 0?", 0, 0.8)
    assert (second._.question, second._.question_index, second._.confidence) == ("Question 1?", 1, 0.3)
    assert first._.evidence.text == "The Eiffel Tower is in Paris."
    set_answers(doc, [Answer("Where?", 0, "Paris", (23, 28))])  # no evidence
    assert doc.spans[SPAN_KEY][0]._.evidence is None


def test_answers_survive_a_docbin_as_lists(blank_nlp, doc):
    alternatives = [{"text": "Paris", "start_char": 23, "end_char": 28, "confidence": 0.6}]
    set_answers(doc, [span_answer(doc, 0, "Paris", alternatives=alternatives), Answer("Why?", 1, "For the fair")])
    docbin = DocBin(store_user_data=True)
    docbin.add(doc)
    [restored] = DocBin().from_bytes(docbin.to_bytes()).get_docs(blank_nlp.vocab)
    assert isinstance(restored._.answers, list) and restored._.answers == doc._.answers
    assert isinstance(restored._.answers[0]["alternatives"], list)  # nested sequences are lists again too
    assert restored.spans[SPAN_KEY][0]._.question == "Question 0?"


def test_registering_twice_keeps_the_extensions_and_their_defaults(doc):
    register_extensions()
    register_extensions()
    assert (doc._.questions, doc._.qa_error, doc._.doc_id, doc._.qa_warning) == (None, None, None, None)
