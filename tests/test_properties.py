"""Properties over arbitrary input: readers never raise and give one document per file or line;
the annotate and QA pipelines write one record per document whose offsets point into its text."""

import io
import json
import shutil
import string
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from nlpipe.config import JobSettings, build_pipeline, load_config
from nlpipe.io.readers import read_documents
from nlpipe.runner import run

REPO = Path(__file__).resolve().parents[1]
# No example database: it would leave a .hypothesis folder in the repository.
FAST = settings(max_examples=150, deadline=None, database=None)
PIPELINE = settings(max_examples=40, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])

# Text a document may hold: any code point but surrogates (they cannot be encoded), with the
# awkward ones made likely: control characters, NUL, BOM, line and paragraph separators,
# combining marks, emoji, right-to-left script, several kinds of whitespace.
AWKWARD = "\x00\x01\x1f\x7f\x85\ufeff\u2028\u2029\u200b\u0301\u00a0\u3000\t\r\n \U0001f600\u05d0\u0627é."


def text_strategy(longest_token: int = 3000):
    return st.one_of(
        st.text(max_size=300),
        st.text(alphabet=st.sampled_from(AWKWARD + "ab Z1"), max_size=200),
        st.text(alphabet=string.ascii_letters + " .\n", max_size=400),
        # One very long token, alone or among words.
        st.builds(lambda c, n, w: w + c * n + w, st.sampled_from("aé字-.!1\U0001f600"),
                  st.integers(longest_token // 10, longest_token),
                  st.sampled_from(["", " ", "\n", "Paris is in France. "])),
    )


texts = text_strategy(longest_token=2000)  # spaCy splits a long run of punctuation in quadratic time
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                           lambda children: st.lists(children, max_size=3)
                           | st.dictionaries(st.text(max_size=5), children, max_size=3), max_leaves=8)


def read_jsonl(path: Path) -> list[dict]:
    # Split on b"\n" only: str.splitlines() would also split inside a record at U+2028, U+0085...
    return [json.loads(line) for line in path.read_bytes().split(b"\n") if line]


def is_blank(line: bytes, first: bool) -> bool:
    """A line the JSONL and stdin readers skip by design: it decodes to whitespace only."""
    try:
        return not line.decode("utf-8-sig" if first else "utf-8").strip()
    except UnicodeDecodeError:
        return False


def check_document(document) -> None:
    assert isinstance(document.id, str)
    if document.error is None:
        assert isinstance(document.text, str)
        assert isinstance(document.questions, list) and all(isinstance(q, str) for q in document.questions)
    else:
        assert document.text is None
        assert set(document.error) == {"type", "message"}
        assert isinstance(document.error["type"], str) and isinstance(document.error["message"], str)


# --- readers --------------------------------------------------------------------------------

@FAST
@given(files=st.lists(st.binary(max_size=300) | texts.map(lambda t: t.encode("utf-8")),
                      max_size=6),
       suffix=st.sampled_from([".txt", ".md", ".TXT"]))
def test_any_bytes_in_a_folder_give_one_document_per_file(files, suffix):
    with tempfile.TemporaryDirectory() as folder:
        names = [f"{i:02d}{suffix}" for i in range(len(files))]
        for name, data in zip(names, files):
            (Path(folder) / name).write_bytes(data)
        documents = list(read_documents(folder))
    assert [d.id for d in documents] == names
    for document, data in zip(documents, files):
        check_document(document)
        if b"\x00" in data[:8192]:
            assert document.error["type"] == "binary_file"
            continue
        try:
            expected = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            assert document.error["type"] == "decode_error"
        else:
            assert document.error is None and document.text == expected


def jsonl_records():
    """A JSON object with a string "text" (and maybe an id and questions), or any JSON value."""
    with_text = st.fixed_dictionaries(
        {"text": texts},
        optional={"id": st.text(max_size=10) | st.integers(), "questions": st.text(max_size=20)
                  | st.lists(st.text(max_size=20), max_size=3) | json_values})
    return st.builds(lambda record, ascii: json.dumps(record, ensure_ascii=ascii).encode("utf-8"),
                     with_text | json_values, st.booleans())


blank_lines = st.sampled_from([b"", b" ", b"\t", b"\r", b"  \r", "\u3000".encode(), "\ufeff".encode()])
garbage_lines = st.binary(max_size=120).map(lambda b: b.replace(b"\n", b""))


@FAST
@given(lines=st.lists(st.tuples(st.sampled_from(["record", "garbage", "blank"]), jsonl_records(), garbage_lines,
                                blank_lines), max_size=12),
       final_newline=st.booleans())
def test_any_jsonl_lines_give_one_document_per_non_blank_line(lines, final_newline):
    physical = [{"record": record, "garbage": garbage, "blank": blank}[kind]
                for kind, record, garbage, blank in lines]
    data = b"\n".join(physical) + (b"\n" if final_newline and physical else b"")
    expected = [(n, line) for n, line in enumerate(physical, start=1) if not is_blank(line, first=n == 1)]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "docs.jsonl"
        path.write_bytes(data)
        documents = list(read_documents(str(path)))
    assert len(documents) == len(expected)
    for document, (n, line) in zip(documents, expected):
        check_document(document)
        try:
            record = json.loads(line.decode("utf-8-sig" if n == 1 else "utf-8"))
        except ValueError:  # not UTF-8 or not JSON
            assert document.error is not None and document.id == f"docs.jsonl:{n}"
            continue
        if isinstance(record, dict) and isinstance(record.get("text"), str):
            if not isinstance(record.get("id", ""), str):  # a number, null: refused, not made a string
                assert (document.id, document.error["type"]) == (f"docs.jsonl:{n}", "invalid_id")
                continue
            assert document.id == str(record.get("id", f"docs.jsonl:{n}"))
            if document.error is None:
                assert document.text == record["text"]
        else:
            assert document.error["type"] == "missing_text"


def read_stdin(data: bytes) -> list:
    """read_documents("-") with `data` as standard input."""
    stdin = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(data))
    try:
        return list(read_documents("-"))
    finally:
        sys.stdin = stdin


@FAST
@given(data=st.binary(max_size=400)
       | st.lists(jsonl_records() | garbage_lines | blank_lines, max_size=8).map(b"\n".join))
def test_any_bytes_on_stdin_give_one_document_per_non_blank_line(data):
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the newline at the end closes the last line
    expected = sum(not is_blank(line, first=n == 0) for n, line in enumerate(lines))
    documents = read_stdin(data)
    assert len(documents) == expected
    for document in documents:
        check_document(document)


# JSON objects (so that stdin parses them too) that json.loads rejects without a JSONDecodeError.
pathological_json = st.one_of(
    # nesting deeper than the recursion limit
    st.integers(2_000, 50_000).map(lambda n: b'{"text": "x", "nested": ' + b"[" * n + b"]" * n + b"}"),
    st.integers(2_000, 50_000).map(lambda n: b'{"a": ' * n + b"1" + b"}" * n),
    # more digits than int() converts (sys.get_int_max_str_digits(), 4300 by default)
    st.integers(4_400, 20_000).map(lambda n: b'{"text": "x", "id": ' + b"7" * n + b"}"),
    st.integers(4_400, 20_000).map(lambda n: b'{"text": "x", "count": -' + b"1" * n + b"}"),
)


@settings(max_examples=10, deadline=None, database=None)
@given(line=pathological_json, source=st.sampled_from(["jsonl", "stdin"]))
def test_json_that_python_cannot_parse_becomes_an_error_record(line, source):
    data = b'{"text": "before"}\n' + line + b'\n{"text": "after"}\n'
    if source == "stdin":
        documents = read_stdin(data)
    else:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "docs.jsonl"
            path.write_bytes(data)
            documents = list(read_documents(str(path)))
    assert [d.text for d in documents] == ["before", None, "after"]
    assert documents[1].id == ("stdin:2" if source == "stdin" else "docs.jsonl:2")
    assert documents[1].error["type"] == "invalid_json"


# --- the annotate pipeline ------------------------------------------------------------------

@pytest.fixture(scope="module")
def annotate_nlp():
    return build_pipeline(load_config(REPO / "pipelines" / "annotate.cfg"))


def check_tokens(record: dict, text: str) -> None:
    """Tokens lie in order on the text, each where it says, with at most one space between:
    together with their whitespace they are the document."""
    tokens = record["tokens"]
    assert tokens, record
    end = 0
    for i, token in enumerate(tokens):
        assert token["i"] == i
        start = token["start_char"]
        assert text[end:start] in ("", " ") if i else start == 0, (i, text[end:start])
        assert text[start:start + len(token["text"])] == token["text"]
        assert 0 <= token["head"] < len(tokens)
        end = start + len(token["text"])
    assert text[end:] in ("", " ")
    for entity in record["entities"]:
        assert text[entity["start_char"]:entity["end_char"]] == entity["text"]
    for sentence in record["sentences"]:
        assert 0 <= sentence["start_char"] < sentence["end_char"] <= len(text)


def write_inputs(folder: Path, inputs: list) -> list[tuple[str, str | None]]:
    """Files 000.txt, 001.txt, ... (a str is written as UTF-8); (id, the text it should read as)."""
    expected = []
    for i, content in enumerate(inputs):
        data = content.encode("utf-8") if isinstance(content, str) else content
        (folder / f"{i:03d}.txt").write_bytes(data)
        try:
            text = None if b"\x00" in data[:8192] else data.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = None
        expected.append((f"{i:03d}.txt", text))
    return expected


def run_annotate(nlp, inputs: list, batch_size: int) -> list[tuple[dict, str | None]]:
    with tempfile.TemporaryDirectory() as root:
        folder = Path(root) / "docs"
        folder.mkdir()
        expected = write_inputs(folder, inputs)
        output = Path(root) / "out.jsonl"
        summary = run(nlp, JobSettings(input=str(folder), output=str(output), annotations=True,
                                       batch_size=batch_size))
        records = read_jsonl(output) if output.exists() else []  # no record, no file
    assert [r["id"] for r in records] == [doc_id for doc_id, _ in expected]
    assert summary.documents == len(inputs) and summary.failed == sum("error" in r for r in records)
    return [(record, text) for record, (_, text) in zip(records, expected)]


def check_annotations(pairs) -> None:
    for record, text in pairs:
        if text is None or not text.strip():
            assert record["error"]["type"] in ("binary_file", "decode_error", "empty_document"), record
            continue
        assert "error" not in record, record
        check_tokens(record, text)


@PIPELINE
@given(inputs=st.lists(texts | st.binary(max_size=200), max_size=6), batch_size=st.integers(1, 4))
def test_annotate_any_files_one_record_each_with_tokens_on_the_text(annotate_nlp, inputs, batch_size):
    check_annotations(run_annotate(annotate_nlp, inputs, batch_size))


@pytest.mark.slow
@PIPELINE
@given(inputs=st.lists(texts, min_size=1, max_size=4), max_length=st.integers(8, 120))
def test_annotate_texts_longer_than_max_length_in_pieces(annotate_nlp, inputs, max_length):
    # A small max_length sends most texts through split_text and Doc.from_docs.
    original = annotate_nlp.max_length
    annotate_nlp.max_length = max_length
    try:
        pairs = run_annotate(annotate_nlp, inputs, batch_size=2)
    finally:
        annotate_nlp.max_length = original
    check_annotations(pairs)


# --- the QA pipeline with the tiny model ----------------------------------------------------

@pytest.fixture()
def one_torch_thread():
    """Two busy-waiting OpenMP threads on a loaded 2-core machine make the tiny model ~50x slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(params=[512, 4096], ids=["context-512", "context-4096"])
def qa_pipeline(request, qa_overrides, tiny_llama_dir, tmp_path, one_torch_thread):
    """(pipelines/qa.cfg on the tiny model, its context window): as conftest's qa_overrides give it
    (512 tokens), and the same weights with 4096 tokens.

    In 512 tokens the evidence shrinks to what the window leaves; a question too long for the
    window by itself fails with context_overflow (E018); in 4096 every one fits.
    """
    overrides = dict(qa_overrides)
    if request.param != 512:
        folder = Path(shutil.copytree(tiny_llama_dir, tmp_path / "tiny-llama-long"))
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        config["max_position_embeddings"] = request.param
        (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
        overrides["components.llama_qa.model.path"] = str(folder)
    return build_pipeline(load_config(REPO / "pipelines" / "qa.cfg", overrides)), request.param


questions = st.one_of(st.text(max_size=40), st.text(alphabet=st.sampled_from(AWKWARD + "ab ?"), max_size=20),
                      st.sampled_from(["Where is it?", "Who built it?", "When did it open?", "How many?", "Why?",
                                       "What is it?", "Which city?", "Is it tall?", "?", ""]))


def run_qa(nlp, documents: list[tuple[str, list[str]]]) -> list[dict]:
    """Documents as a JSONL input (ids d0, d1, ...), their records from runner.run."""
    with tempfile.TemporaryDirectory() as root:
        source = Path(root) / "docs.jsonl"
        source.write_text("".join(json.dumps({"id": f"d{i}", "text": text, "questions": asked}) + "\n"
                                  for i, (text, asked) in enumerate(documents)), encoding="utf-8")
        output = Path(root) / "out.jsonl"
        run(nlp, JobSettings(input=str(source), output=str(output), batch_size=2))
        records = read_jsonl(output)
    assert [r["id"] for r in records] == [f"d{i}" for i in range(len(documents))]
    return records


@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(documents=st.lists(st.tuples(text_strategy(longest_token=600), st.lists(questions, max_size=2)),
                          min_size=1, max_size=3))
@pytest.mark.slow
def test_qa_any_text_and_question_answers_point_into_the_text(qa_pipeline, documents):
    nlp, context = qa_pipeline
    records = run_qa(nlp, documents)
    for record, (text, asked) in zip(records, documents):
        if not text.strip():
            assert record["error"]["type"] == "empty_document"
            continue
        if context == 512 and "error" in record:
            event("prompt too long for 512 tokens")
            assert record["error"]["type"] == "context_overflow" and "E018" in record["error"]["message"]
        else:
            assert "error" not in record, record["error"]
        answers = record["answers"]
        assert [a["question"] for a in answers] == list(dict.fromkeys(q.strip() for q in asked if q.strip()))
        for answer in answers:
            assert isinstance(answer["text"], str)
            event("answer is a span" if answer["start_char"] is not None else "answer is not a span")
            if answer["start_char"] is not None:
                assert 0 <= answer["start_char"] <= answer["end_char"] <= len(text)
                assert text[answer["start_char"]:answer["end_char"]] == answer["text"]
            else:
                assert answer["end_char"] is None
        for entity in record["entities"]:
            assert text[entity["start_char"]:entity["end_char"]] == entity["text"]


# With the tiny model's 512-token context these inputs outgrow the window. The run must still
# finish: the other document answered, and this one answered or given an error record.
OVERFLOWS = [
    # The prompt fits, but the candidate span "zqzq..." (200 tokens) cannot be scored after it.
    pytest.param("It is " + "zq" * 100 + ".", "What is it?", id="long-candidate-span"),
    # The question alone is longer than the context.
    pytest.param("Paris is in France.", "Where is it? " + "zz " * 400, id="long-question"),
]


@pytest.mark.parametrize("text,question", OVERFLOWS)
def test_a_document_too_long_for_the_context_does_not_stop_the_run(qa_nlp, one_torch_thread, text, question):
    first, second = run_qa(qa_nlp, [("Rome is in Italy.", ["Where is it?"]), (text, [question])])
    assert "error" not in first and len(first["answers"]) == 1
    if "error" not in second:
        [answer] = second["answers"]
        if answer["start_char"] is not None:
            assert text[answer["start_char"]:answer["end_char"]] == answer["text"]
