"""Reading documents: folders, JSONL, single files, stdin, questions files; bad inputs become error records."""

import io
import json
import sys

import pytest

from nlpipe.errors import InputError
from nlpipe.io.readers import (Document, decode_text, parse_jsonl_line, read_documents, read_file, read_folder,
                               read_jsonl, read_questions, read_stdin)


@pytest.fixture()
def folder(tmp_path):
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    (root / "b.txt").write_text("Bravo.", encoding="utf-8")
    (root / "a.md").write_text("# Alpha\nText.", encoding="utf-8")
    (root / "sub" / "c.TXT").write_text("Charlie.", encoding="utf-8")
    (root / "notes.json").write_text("{}", encoding="utf-8")
    (root / "image.png").write_bytes(b"\x89PNG\x00\x00")
    (root / "README").write_text("no suffix", encoding="utf-8")
    (root / "folder.txt").mkdir()  # a directory with a text suffix is not a document
    return root


def test_folder_reads_txt_and_md_sorted_with_relative_ids(folder):
    docs = list(read_documents(str(folder)))
    assert [d.id for d in docs] == ["a.md", "b.txt", "sub/c.TXT"]
    assert [d.text for d in docs] == ["# Alpha\nText.", "Bravo.", "Charlie."]
    assert all(d.error is None and d.questions == [] for d in docs)


def test_folder_order_is_stable(folder):
    assert [d.id for d in read_folder(folder)] == [d.id for d in read_folder(folder)]


def test_empty_folder(tmp_path):
    assert list(read_documents(str(tmp_path))) == []


def test_bad_files_in_a_folder_become_error_records(folder):
    (folder / "latin1.txt").write_bytes("Café crème".encode("latin-1"))
    (folder / "binary.txt").write_bytes(b"abc\x00\x01\x02def")
    docs = {d.id: d for d in read_documents(str(folder))}
    assert docs["latin1.txt"].text is None
    assert docs["latin1.txt"].error["type"] == "decode_error"
    assert "byte 3" in docs["latin1.txt"].error["message"]
    assert docs["binary.txt"].text is None and docs["binary.txt"].error["type"] == "binary_file"
    assert docs["b.txt"].error is None  # the others are still read


def test_decode_text():
    assert decode_text("x", "Grüße".encode()).text == "Grüße"
    assert decode_text("x", "\ufeffBOM first".encode("utf-8")).text == "BOM first"
    assert decode_text("x", b"").text == ""
    assert decode_text("x", b"\xff\xfe").error["type"] == "decode_error"
    assert decode_text("x", b"text\x00").error["type"] == "binary_file"
    assert decode_text("x", b"a" * 9000 + b"\x00").text is not None  # only the first 8 KiB is sniffed


def test_single_text_file(tmp_path):
    path = tmp_path / "one.txt"
    path.write_text("Just one.", encoding="utf-8")
    assert list(read_documents(str(path))) == [Document(id="one.txt", text="Just one.")]


def test_unreadable_file(tmp_path):
    document = read_file(tmp_path / "gone.txt", "gone.txt")
    assert document.text is None and document.error["type"] == "unreadable_file"


def test_missing_input_is_E008(tmp_path):
    with pytest.raises(InputError, match="E008"):
        list(read_documents(str(tmp_path / "missing")))


def write_jsonl(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_jsonl_ids_text_and_questions(tmp_path):
    path = write_jsonl(tmp_path / "docs.jsonl", [
        json.dumps({"id": "first", "text": "One.", "questions": ["Q1?", "Q2?"]}),
        "",
        json.dumps({"text": "Two."}),
        json.dumps({"id": "7", "text": "Three.", "questions": "Single?"}),  # a number is refused (below)
        json.dumps({"id": "empty-q", "text": "Four.", "questions": None}),
    ])
    docs = list(read_documents(str(path)))
    assert [(d.id, d.text, d.questions, d.error) for d in docs] == [
        ("first", "One.", ["Q1?", "Q2?"], None),
        ("docs.jsonl:3", "Two.", [], None),  # line number of the record
        ("7", "Three.", ["Single?"], None),
        ("empty-q", "Four.", [], None),
    ]


def test_jsonl_bad_lines_become_error_records(tmp_path):
    path = write_jsonl(tmp_path / "docs.jsonl", [
        json.dumps({"id": "ok", "text": "Fine."}),
        "{not json",
        json.dumps({"id": "no-text", "body": "x"}),
        json.dumps({"id": "num-text", "text": 5}),
        json.dumps(["a", "list"]),
        json.dumps({"id": "bad-q", "text": "x", "questions": [1, 2]}),
        json.dumps({"id": "bad-q2", "text": "x", "questions": {"a": 1}}),
        json.dumps({"id": "after", "text": "Still read."}),
    ])
    docs = list(read_documents(str(path)))
    assert [(d.id, d.error["type"] if d.error else None) for d in docs] == [
        ("ok", None),
        ("docs.jsonl:2", "invalid_json"),
        ("no-text", "missing_text"),
        ("num-text", "missing_text"),
        ("docs.jsonl:5", "missing_text"),
        ("bad-q", "invalid_questions"),
        ("bad-q2", "invalid_questions"),
        ("after", None),
    ]
    assert "line 2" in docs[1].error["message"]
    assert all(d.text is None for d in docs if d.error)


@pytest.mark.parametrize("given", [123, None, 1.5, True, ["a"], {"a": 1}])
def test_an_id_that_is_not_a_string_fails_its_line_alone(tmp_path, given):
    # str() made 123 the id "123", one document with the record so named, and null the id "None".
    path = write_jsonl(tmp_path / "docs.jsonl", [json.dumps({"id": str(given), "text": "One."}),
                                                 json.dumps({"id": given, "text": "Two."}),
                                                 json.dumps({"id": "after", "text": "Three."})])
    named, refused, after = read_documents(str(path))
    assert (named.id, named.error, after.id, after.error) == (str(given), None, "after", None)
    assert (refused.id, refused.text, refused.error["type"]) == ("docs.jsonl:2", None, "invalid_id")
    assert refused.error["message"].startswith(f"E026: line 2: \"id\" is {json.dumps(given)}, not a string")


def test_a_line_failing_for_another_reason_is_named_by_its_place_when_its_id_is_not_a_string():
    assert parse_jsonl_line('{"id": 5, "body": "x"}', 3, "src").id == "src:3"
    assert parse_jsonl_line('{"id": "five", "body": "x"}', 3, "src").id == "five"


def test_jsonl_with_bad_bytes_keeps_going(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_bytes(b'{"id": "a", "text": "caf\xe9"}\n{"id": "b", "text": "ok"}\n')
    docs = list(read_documents(str(path)))
    assert [d.id for d in docs] == ["docs.jsonl:1", "b"]
    assert docs[0].error["type"] == "decode_error" and docs[1].text == "ok"


def test_an_absurdly_long_line_is_reported_not_read(tmp_path, monkeypatch):
    import nlpipe.io.readers as readers

    monkeypatch.setattr(readers, "MAX_LINE_BYTES", 100)
    path = tmp_path / "docs.jsonl"
    path.write_bytes(b'{"id": "a", "text": "short"}\n{"id": "b", "text": "' + b"x" * 5000 + b'"}\n{"text": "c"}\n')
    docs = list(read_documents(str(path)))
    assert [(d.id, d.error and d.error["type"]) for d in docs] == [
        ("a", None), ("docs.jsonl:2", "line_too_long"), ("docs.jsonl:3", None)]


def test_parse_jsonl_line_directly():
    assert parse_jsonl_line('{"text": "x"}', 4, "src").id == "src:4"
    assert parse_jsonl_line("null", 1, "src").error["type"] == "missing_text"


def test_stdin_mixes_json_and_plain_lines(monkeypatch):
    stream = io.TextIOWrapper(io.BytesIO(b'Plain text document.\n\n{"id": "j", "text": "JSON doc.", '
                                         b'"questions": ["Q?"]}\n   {broken\nAnother plain line\n'))
    monkeypatch.setattr(sys, "stdin", stream)
    docs = list(read_documents("-"))
    assert [(d.id, d.text, d.questions, d.error and d.error["type"]) for d in docs] == [
        ("stdin:1", "Plain text document.", [], None),
        ("j", "JSON doc.", ["Q?"], None),
        ("stdin:4", None, [], "invalid_json"),
        ("stdin:5", "Another plain line", [], None),
    ]


def test_read_stdin_and_read_jsonl_take_any_stream():
    assert [d.text for d in read_stdin(io.BytesIO(b"a\nb"))] == ["a", "b"]
    assert [d.id for d in read_jsonl(io.BytesIO(b'{"text": "a"}\n\n{"text": "b"}\n'), "s")] == ["s:1", "s:3"]


def test_read_questions_skips_comments_and_blank_lines(tmp_path):
    path = tmp_path / "questions.txt"
    path.write_text("# Asked of every document\n\nWho built it?\n   \n  When did it open?  \n  # indented comment\n",
                    encoding="utf-8")
    assert read_questions(str(path)) == ["Who built it?", "When did it open?"]


def test_read_questions_missing_or_undecodable_is_E009(tmp_path):
    with pytest.raises(InputError, match="E009") as err:
        read_questions(str(tmp_path / "none.txt"))
    assert "none.txt" in str(err.value) and err.value.exit_code == 2
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe\xfa")
    with pytest.raises(InputError, match="E009"):
        read_questions(str(bad))


def test_a_questions_file_over_the_cap_is_refused_before_it_is_read_whole(tmp_path, monkeypatch):
    import nlpipe.files as files

    monkeypatch.setattr(files, "MAX_SMALL_FILE_BYTES", 20)
    path = tmp_path / "questions.txt"
    path.write_text("Who built it?\nWhen did it open?\n")
    with pytest.raises(InputError, match="^E009.*over 20 bytes"):
        read_questions(str(path))


def test_dev_zero_as_questions_file_is_refused_unread():
    with pytest.raises(InputError, match="^E009.*/dev/zero.*character device, not a regular file"):
        read_questions("/dev/zero")
