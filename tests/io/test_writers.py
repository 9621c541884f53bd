"""doc_record and JsonlWriter."""

import json

import pytest
import spacy

from nlpipe.io.writers import JsonlWriter, doc_record


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
                     "dep": "ROOT", "head": 2, "ent": ""}
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


def test_writer_writes_one_line_per_record_and_flushes(tmp_path):
    target = tmp_path / "nested" / "out.jsonl"
    records = [{"id": "a", "text": "Grüße"}, {"id": "b", "answers": [{"text": "x\ny"}]}]
    with JsonlWriter(str(target)) as writer:
        writer.write(records[0])
        # flushed: readable before the writer closes
        assert target.read_text(encoding="utf-8") == '{"id": "a", "text": "Grüße"}\n'
        writer.write(records[1])
        lines = target.read_text(encoding="utf-8").splitlines()
        assert [json.loads(line) for line in lines] == records
    assert target.read_text(encoding="utf-8").count("\n") == 2
    assert writer._stream.closed


def test_writer_overwrites(tmp_path):
    target = tmp_path / "out.jsonl"
    target.write_text("old\nold\n")
    with JsonlWriter(str(target)) as writer:
        writer.write({"id": 1})
    assert target.read_text() == '{"id": 1}\n'


def test_writer_to_stdout(capsys):
    import sys

    with JsonlWriter("-") as writer:
        writer.write({"id": "s"})
    assert capsys.readouterr().out == '{"id": "s"}\n'
    assert not sys.stdout.closed
