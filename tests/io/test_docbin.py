"""Records to Docs and the DocBin output: what plain spaCy reads back from a `.spacy` file."""

import json

import pytest
import spacy
from spacy.tokens import DocBin
from spacy.vocab import Vocab

import nlpipe.components  # noqa: F401  (registers doc._.answers, span._.confidence, ...)
from nlpipe.errors import InputError
from nlpipe.io.docbin import is_docbin, read_docs, records_path, write_docbin
from nlpipe.io.records import doc_record, record_doc

TEXT = "Gustave Eiffel built the tower in Paris.  It opened in 1889.\n\nIt is 330 metres tall."


def answer(index, text, start, evidence=(0, 40), confidence=0.5, **extra):
    return {"question": f"Question {index + 1}?", "question_index": index, "text": text, "start_char": start,
            "end_char": None if start is None else start + len(text), "grounded": start is not None,
            "confidence": confidence, "evidence": TEXT[evidence[0]:evidence[1]], "evidence_start_char": evidence[0],
            "evidence_end_char": evidence[1], "logprob": -0.25, "generated": None, **extra}


@pytest.fixture()
def record(en_nlp):
    record = doc_record("tower.txt", en_nlp(TEXT), annotations=True)
    record["answers"] = [answer(0, "Gustave Eiffel", 0, confidence=0.75), answer(1, "because", None),
                         answer(2, "", None, error={"type": "context_overflow", "message": "E018: too long"})]
    record["error"] = record["answers"][2]["error"]
    record["warning"] = {"type": "lone_surrogates", "message": "replaced"}
    return record


def test_suffix_decides_the_format():
    assert is_docbin("out.spacy") and is_docbin("OUT.SPACY") and not is_docbin("out.jsonl") and not is_docbin("-")
    assert records_path("out.spacy") == "out.spacy.jsonl" and records_path("out.jsonl") == "out.jsonl"
    assert records_path("-") == "-"


def test_record_becomes_the_doc_it_was_written_from(en_nlp, record):
    original = en_nlp(TEXT)
    doc = record_doc(record, Vocab())
    assert doc.text == original.text  # whitespace tokens and single spaces alike
    assert [(t.text, t.pos_, t.tag_, t.lemma_, str(t.morph), t.dep_, t.head.i) for t in doc] == \
        [(t.text, t.pos_, t.tag_, t.lemma_, str(t.morph), t.dep_, t.head.i) for t in original]
    assert [(e.text, e.label_) for e in doc.ents] == [(e.text, e.label_) for e in original.ents]
    assert [s.text for s in doc.sents] == [s.text for s in original.sents]
    assert doc._.doc_id == "tower.txt" and doc._.qa_warning["type"] == "lone_surrogates"
    assert doc._.qa_error is None  # a question's failure stays with its answer


def test_docbin_round_trip_with_plain_spacy(en_nlp, record, tmp_path):
    records = tmp_path / "out.spacy.jsonl"
    unreadable = {"id": "binary.txt", "error": {"type": "bad_input", "message": "not UTF-8"}}
    records.write_text(json.dumps(record) + "\n" + json.dumps(unreadable) + "\n", encoding="utf-8")
    assert write_docbin(str(records), str(tmp_path / "out.spacy")) == 2

    nlp = spacy.blank("en")  # what a spaCy user has: no nlpipe pipeline
    doc, failed = DocBin().from_disk(tmp_path / "out.spacy").get_docs(nlp.vocab)
    original = en_nlp(TEXT)
    assert [t.text for t in doc] == [t.text for t in original]
    assert [t.pos_ for t in doc] == [t.pos_ for t in original]
    assert [t.lemma_ for t in doc] == [t.lemma_ for t in original]
    assert [(t.dep_, t.head.i) for t in doc] == [(t.dep_, t.head.i) for t in original]
    assert [(e.text, e.label_, e.start_char) for e in doc.ents] == [(e.text, e.label_, e.start_char)
                                                                     for e in original.ents]
    [span] = doc.spans["answers"]
    assert (span.text, span.label_, span.id) == ("Gustave Eiffel", "Q1", 0)
    assert span._.question == "Question 1?" and span._.confidence == 0.75 and span._.logprob == -0.25
    assert span._.evidence.text == TEXT[:40]
    assert [a["text"] for a in doc._.answers] == ["Gustave Eiffel", "because", ""]
    assert doc._.answers[2]["error"]["type"] == "context_overflow"
    assert (failed._.doc_id, len(failed), failed._.qa_error["type"]) == ("binary.txt", 0, "bad_input")
    assert [d._.doc_id for d in read_docs(str(tmp_path / "out.spacy"))] == ["tower.txt", "binary.txt"]


def test_a_torn_last_line_is_left_out(record, tmp_path):
    records = tmp_path / "out.jsonl"
    records.write_text(json.dumps(record) + "\n" + json.dumps(record)[:50], encoding="utf-8")
    assert [d._.doc_id for d in read_docs(str(records))] == ["tower.txt"]


@pytest.mark.parametrize("content, reason", [
    ('{"id": "a", "entities": []}\n', "written without --annotations"),
    ("not json\n", "not JSON"),
    ('["a list"]\n', "not an nlpipe record"),
])
def test_records_that_cannot_become_docs_are_one_message(tmp_path, content, reason):
    path = tmp_path / "out.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=rf"E091: line 1 of .*{reason}"):
        list(read_docs(str(path)))


def test_unreadable_inputs_are_one_message(tmp_path):
    damaged = tmp_path / "damaged.spacy"
    damaged.write_bytes(b"\x89PNG not a docbin")
    with pytest.raises(InputError, match="E090: cannot read .*not a spaCy DocBin"):
        read_docs(str(damaged))
    with pytest.raises(InputError, match="E090: cannot read .*No such file"):
        read_docs(str(tmp_path / "missing.spacy"))
    with pytest.raises(InputError, match="E092"):
        read_docs(str(tmp_path / "answers.txt"))
