"""doc_record: the JSON record of an annotated Doc (record_doc, its inverse, is tested with the
DocBin output it feeds, in test_docbin.py)."""

import json

import pytest
import spacy

from nlpipe.io.records import doc_record


@pytest.fixture(scope="module")
def annotated(en_nlp):
    return en_nlp("Gustave Eiffel built a tower in Paris. It opened in 1889.")


def test_record_without_annotations(annotated):
    record = doc_record("doc-1", annotated)
    assert list(record) == ["id", "entities"]  # no answers: the extension is unset (None)
    assert record["id"] == "doc-1"
    assert {"text": "Paris", "label": "GPE", "start_char": 32, "end_char": 37} in record["entities"]
    for ent in record["entities"]:
        assert annotated.text[ent["start_char"]:ent["end_char"]] == ent["text"]
    json.dumps(record)


def test_record_with_annotations(annotated):
    record = doc_record("doc-1", annotated, annotations=True)
    assert record["sentences"] == [{"start_char": 0, "end_char": 38}, {"start_char": 39, "end_char": 57}]
    assert len(record["tokens"]) == len(annotated)
    built = record["tokens"][2]
    assert built == {"i": 2, "text": "built", "start_char": 15, "pos": "VERB", "tag": "VBD", "lemma": "build",
                     "morph": "Tense=Past|VerbForm=Fin", "dep": "ROOT", "head": 2, "ent": ""}
    assert record["tokens"][0]["ent"] == "PERSON" and record["tokens"][0]["head"] == 1
    json.dumps(record)


def test_record_includes_answers(en_nlp):
    doc = en_nlp("Paris.")
    doc._.answers = [{"question": "Where?", "text": "Paris", "start_char": 0, "end_char": 5}]
    assert doc_record("x", doc)["answers"] == doc._.answers
    doc._.answers = []
    assert doc_record("x", doc)["answers"] == []


def test_record_of_an_unparsed_doc():
    doc = spacy.blank("en")("No parser here.")
    record = doc_record("blank", doc, annotations=True)
    assert record["entities"] == [] and record["sentences"] == []
    assert [t["text"] for t in record["tokens"]] == ["No", "parser", "here", "."]
    assert record["tokens"][0]["pos"] == ""
