"""Docs from records and back: the DocBin (`.spacy`) output of a run, and the Docs a report reads.

A run's records (JSONL, with token annotations) are what it writes as each document is done and
what resume reads; a `.spacy` output is built from them whenever the run stops, so it never
holds less than the records and works for every engine.
"""

import json
import os
from pathlib import Path
from typing import Iterator

from spacy.tokens import Doc, DocBin
from spacy.vocab import Vocab

from ..components.answers import set_answer_records
from ..errors import Errors, InputError
from .writers import temporary_path

DOCBIN_SUFFIX = ".spacy"


def is_docbin(path: str) -> bool:
    return path != "-" and Path(path).suffix.lower() == DOCBIN_SUFFIX


def records_path(output: str) -> str:
    """Where a run writes its JSONL records: the output itself, or beside a `.spacy` output."""
    return f"{output}.jsonl" if is_docbin(output) else output


def record_doc(record: dict, vocab: Vocab) -> Doc:
    """The Doc an annotation record describes (tokens, tags, lemmas, parse, sentences, entities,
    answers, id, error, warning); an empty Doc holding the error of a document never read.
    ValueError when the record has no tokens (written without annotations)."""
    tokens = record.get("tokens")
    if tokens is None and "error" not in record:
        raise ValueError("it has no \"tokens\" (written without --annotations)")
    doc = _annotated_doc(tokens or [], record.get("sentences") or [], vocab)
    doc.ents = [doc.char_span(e["start_char"], e["end_char"], label=e["label"], alignment_mode="expand")
                for e in record.get("entities") or []]
    doc._.doc_id = record["id"]
    answers = record.get("answers")
    if answers is not None:
        set_answer_records(doc, answers)
    error = record.get("error")
    # A question's error is its answer's; only a failure of the whole Doc is the Doc's own.
    if error is not None and all(a.get("error") != error for a in answers or []):
        doc._.qa_error = error
    doc._.qa_warning = record.get("warning")
    return doc


def _annotated_doc(tokens: list[dict], sentences: list[dict], vocab: Vocab) -> Doc:
    words = [t["text"] for t in tokens]
    # spaCy keeps one space after a token as its whitespace; any other gap is a token of its own.
    spaces = [after["start_char"] > t["start_char"] + len(t["text"]) for t, after in zip(tokens, tokens[1:])]
    columns = {name: [t.get(key, "") for t in tokens]
               for name, key in (("pos", "pos"), ("tags", "tag"), ("lemmas", "lemma"), ("morphs", "morph"),
                                 ("deps", "dep"))}
    # A column no component filled is left unset rather than set to empty strings.
    values = {name: column for name, column in columns.items() if any(column)}
    if "deps" in values:
        values["heads"] = [t["head"] for t in tokens]
    elif sentences:  # no parse: the sentences came from a sentencizer or senter
        starts = {s["start_char"] for s in sentences}
        values["sent_starts"] = [t["start_char"] in starts for t in tokens]
    return Doc(vocab, words=words, spaces=[*spaces, False][:len(words)], **values)


def read_records(path: str) -> Iterator[tuple[int, dict]]:
    """(line number, record) of each complete line of a JSONL file; a torn last line (a killed
    write, which a resumed run redoes) is left out."""
    try:
        with open(path, "rb") as stream:
            for number, line in enumerate(stream, start=1):
                if not line.endswith(b"\n"):
                    return
                if line.strip():
                    yield number, _parse(line, path, number)
    except OSError as err:
        raise InputError(Errors.E090.format(path=path, reason=err.strerror or err)) from None


def _parse(line: bytes, path: str, number: int) -> dict:
    try:
        record = json.loads(line.decode("utf-8"))
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError is a ValueError too
        raise InputError(Errors.E091.format(path=path, line=number, reason=f"not JSON ({err})")) from None
    if not isinstance(record, dict) or not isinstance(record.get("id"), str):
        raise InputError(Errors.E091.format(path=path, line=number, reason="not an nlpipe record")) from None
    return record


def docs_from_records(path: str, vocab: Vocab) -> Iterator[Doc]:
    for number, record in read_records(path):
        try:
            yield record_doc(record, vocab)
        except (ValueError, KeyError, TypeError, IndexError) as err:
            raise InputError(Errors.E091.format(path=path, line=number, reason=err)) from None


def write_docbin(records: str, target: str) -> int:
    """Write the Docs of the JSONL `records` as a DocBin to `target`, replacing it in one step
    (a reader never sees half a file); returns the number of Docs."""
    docbin = DocBin(store_user_data=True)
    for doc in docs_from_records(records, Vocab()):
        docbin.add(doc)
    temporary = temporary_path(target)
    with open(temporary, "wb") as stream:
        stream.write(docbin.to_bytes())
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(temporary, target)
    return len(docbin)


def read_docs(path: str, vocab: Vocab | None = None) -> Iterator[Doc]:
    """The Docs of a `.spacy` file, or of a JSONL output written with `--annotations`."""
    vocab = vocab or Vocab()
    if is_docbin(path):
        return iter(_read_docbin(path, vocab))
    if Path(path).suffix.lower() == ".jsonl":
        return docs_from_records(path, vocab)
    raise InputError(Errors.E092.format(path=path))


def _read_docbin(path: str, vocab: Vocab) -> list[Doc]:
    try:
        return list(DocBin(store_user_data=True).from_disk(path).get_docs(vocab))
    except OSError as err:
        raise InputError(Errors.E090.format(path=path, reason=err.strerror or err)) from None
    except Exception as err:  # msgpack, zlib and numpy each raise their own kind for a damaged file
        raise InputError(Errors.E090.format(path=path, reason=f"not a spaCy DocBin ({type(err).__name__})")) from None
