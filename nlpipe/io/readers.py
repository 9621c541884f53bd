"""Stream documents from a folder, a JSONL file, a text file or stdin, one at a time.

A document that cannot be read becomes a `Document` with `error` set instead of stopping
the run: a batch job over many files must report bad ones and go on. Nothing here reads more
than a document may hold, or anything but a regular file found in a folder.
"""

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterator

from ..errors import Errors, InputError
from ..files import read_small_file, special_file_kind
from ..surrogates import LONE_SURROGATE, lone_surrogates_warning, repair_questions

TEXT_SUFFIXES = (".txt", ".md")
# A JSONL line longer than this is reported, not read: it is a broken file, not a document.
MAX_LINE_BYTES = 64 * 2**20
# A longer document becomes an error record ([nlpipe] max_document_chars): annotating one
# document takes memory in proportion to its length (README, "Long runs").
MAX_DOCUMENT_CHARS = 10_000_000
# UTF-8 spends at most this many bytes on a character: a file with more bytes than
# 4 * max_chars cannot fit, so no more than that is ever read.
MAX_UTF8_BYTES = 4


@dataclass
class Document:
    id: str
    text: str | None
    questions: list[str] = field(default_factory=list)
    error: dict | None = None  # {"type", "message"} when the document could not be read
    warning: dict | None = None  # {"type", "message"} when it was read but repaired
    # A file not read yet (text None): an engine that reads files in its own tasks (Ray) gets
    # documents from a folder this way; load_document reads it.
    path: str | None = None


def _failed(doc_id: str, kind: str, message: str) -> Document:
    return Document(id=doc_id, text=None, error={"type": kind, "message": message})


def decode_text(doc_id: str, data: bytes) -> Document:
    if b"\x00" in data[:8192]:
        return _failed(doc_id, "binary_file", "looks like a binary file (NUL bytes), not text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        return _failed(doc_id, "decode_error", f"not valid UTF-8 at byte {err.start}; re-encode the file as UTF-8")
    return Document(id=doc_id, text=text)


def _too_long(doc_id: str, max_chars: int) -> Document:
    return _failed(doc_id, "document_too_long", f"longer than {max_chars:,} characters, the limit set by "
                   "[nlpipe] max_document_chars; split the document or raise the limit")


def read_file(path: Path, doc_id: str, max_chars: int = MAX_DOCUMENT_CHARS) -> Document:
    """The file at `path` as one document; never more than `max_chars` characters' worth is read
    (a pipe or a device such as /dev/zero named as input stops there)."""
    try:
        with open(path, "rb") as stream:
            return read_stream(stream, doc_id, max_chars)
    except OSError as err:
        return _failed(doc_id, "unreadable_file", err.strerror or str(err))


def read_stream(stream: BinaryIO, doc_id: str, max_chars: int = MAX_DOCUMENT_CHARS) -> Document:
    """All of `stream` (a file, stdin) as one document, reading at most `max_chars` characters' worth."""
    max_bytes = MAX_UTF8_BYTES * max_chars
    data = stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        return _too_long(doc_id, max_chars)
    return _within(decode_text(doc_id, data), max_chars)


def _within(document: Document, max_chars: int) -> Document:
    """`document`, or an error record in its place when its text is over `max_chars` characters."""
    return _too_long(document.id, max_chars) if document.text and len(document.text) > max_chars else document


def _file_kind(path: Path) -> str | None:
    """What `path` is when it is not a regular file (after symlinks); None for a regular file,
    or one that cannot be looked at, which read_file then reports."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    return special_file_kind(mode)


def read_folder(folder: Path, max_chars: int = MAX_DOCUMENT_CHARS, load: bool = True) -> Iterator[Document]:
    """The folder's documents; with `load` False, regular files come unread (see load_document):
    their ids are their names, so a run can tell which are done before reading any."""
    # Sorted, so that ids and order are the same on every run (resume depends on it).
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in TEXT_SUFFIXES and not p.is_dir()):
        doc_id = path.relative_to(folder).as_posix()
        # Opening a FIFO would wait for a writer forever, and /dev/zero never ends: in a folder
        # only regular files are documents.
        kind = _file_kind(path)
        if kind:
            yield _failed(doc_id, "not_a_regular_file", f"{kind}, not a regular file: not read")
        else:
            yield read_file(path, doc_id, max_chars) if load else Document(id=doc_id, text=None, path=str(path))


def load_document(document: Document, max_chars: int = MAX_DOCUMENT_CHARS) -> Document:
    """`document` with its file read, if it came unread; a file's text cannot hold lone
    surrogates (strict UTF-8), so only its id's repair (the warning) carries over."""
    if document.path is None:
        return document
    loaded = read_file(Path(document.path), document.id, max_chars)
    loaded.warning = document.warning
    return loaded


def read_lines(stream: BinaryIO, max_bytes: int | None = None) -> Iterator[tuple[int, bytes | None]]:
    """(line number, line) for each line; a line longer than `max_bytes` (default MAX_LINE_BYTES)
    comes as None and is skipped without ever being held in memory whole."""
    max_bytes = max_bytes or MAX_LINE_BYTES
    line_number = 0
    while True:
        line = stream.readline(max_bytes + 1)
        if not line:
            return
        line_number += 1
        if len(line) > max_bytes and not line.endswith(b"\n"):
            while (rest := stream.readline(1 << 20)) and not rest.endswith(b"\n"):
                pass
            yield line_number, None
        else:
            yield line_number, line


def parse_jsonl_line(line: str, line_number: int, source: str) -> Document:
    doc_id = f"{source}:{line_number}"
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        return _failed(doc_id, "invalid_json", f"line {line_number} is not JSON: {err.msg}")
    except (RecursionError, ValueError) as err:  # nesting too deep, an integer too long to convert
        return _failed(doc_id, "invalid_json", f"line {line_number} cannot be read as JSON: {err}")
    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        return _failed(_own_id(record, doc_id), "missing_text", f"line {line_number} has no string field \"text\"")
    if "id" in record and not isinstance(record["id"], str):
        # Made a string, 123 would be the document "123" and null the document "None".
        shown = json.dumps(record["id"], ensure_ascii=False)
        return _failed(doc_id, "invalid_id", Errors.E026.format(
            line=line_number, value=shown if len(shown) <= 40 else f"{shown[:40]}…"))
    questions = record.get("questions") or []
    if isinstance(questions, str):
        questions = [questions]
    if not isinstance(questions, list) or not all(isinstance(q, str) for q in questions):
        return _failed(_own_id(record, doc_id), "invalid_questions",
                       f"line {line_number}: \"questions\" must be a list of strings")
    return Document(id=_own_id(record, doc_id), text=record["text"], questions=questions)


def _own_id(record, default: str | None) -> str | None:
    """The record's "id" where it is a string; `default` (the line's place) otherwise."""
    own = record.get("id") if isinstance(record, dict) else None
    return own if isinstance(own, str) else default


def _decoded_lines(stream: BinaryIO, source: str) -> Iterator[tuple[int, str | Document]]:
    """Non-blank lines as text, or as a failed Document when too long or not UTF-8."""
    for line_number, line in read_lines(stream):
        doc_id = f"{source}:{line_number}"
        if line is None:
            yield line_number, _failed(doc_id, "line_too_long", f"line {line_number} is longer than "
                                       f"{MAX_LINE_BYTES:,} bytes; split the document")
            continue
        try:
            text = line.decode("utf-8-sig" if line_number == 1 else "utf-8")
        except UnicodeDecodeError as err:
            yield line_number, _failed(doc_id, "decode_error", f"line {line_number} is not valid UTF-8 at byte {err.start}")
            continue
        if text.strip():
            yield line_number, text


def read_jsonl(stream: BinaryIO, source: str) -> Iterator[Document]:
    for line_number, line in _decoded_lines(stream, source):
        yield line if isinstance(line, Document) else parse_jsonl_line(line, line_number, source)


def read_stdin(stream: BinaryIO) -> Iterator[Document]:
    """Lines that start with '{' are JSONL records; any other non-empty line is one text document."""
    for line_number, line in _decoded_lines(stream, "stdin"):
        if isinstance(line, Document):
            yield line
        elif line.lstrip().startswith("{"):
            yield parse_jsonl_line(line, line_number, "stdin")
        else:
            yield Document(id=f"stdin:{line_number}", text=line.rstrip("\r\n"))


def read_documents(source: str, max_chars: int = MAX_DOCUMENT_CHARS, load: bool = True) -> Iterator[Document]:
    """Documents from `source`: a folder of .txt/.md files, a .jsonl file, a text file, or '-'.

    A document of more than `max_chars` characters becomes an error record; lone surrogates
    are replaced by U+FFFD, which keeps every character offset, and the document says so.
    `load` False leaves a folder's files unread (read_folder); other sources hold their ids
    inside the text, so they are read here all the same.
    """
    for document in _documents(source, max_chars, load):
        yield _within(repair_surrogates(document), max_chars)


def check_source(source: str) -> None:
    """E008 for an input that does not exist, E027 for one (through any links) that is neither a
    folder nor a regular file: a FIFO waits for a writer, a device such as /dev/zero never ends
    (a .jsonl one would be counted and read forever, line after endless line)."""
    if source == "-":
        return
    path = Path(source)
    if not path.exists():
        raise InputError(Errors.E008.format(path=source))
    kind = None if path.is_dir() else _file_kind(path)
    if kind:
        raise InputError(Errors.E027.format(path=source, kind=kind))


def _documents(source: str, max_chars: int, load: bool) -> Iterator[Document]:
    check_source(source)
    if source == "-":
        yield from read_stdin(sys.stdin.buffer)
        return
    path = Path(source)
    if path.is_dir():
        yield from read_folder(path, max_chars, load)
    elif path.suffix.lower() == ".jsonl":
        with open(path, "rb") as stream:
            yield from read_jsonl(stream, path.name)
    else:
        yield read_file(path, path.name, max_chars)


def repair_surrogates(document: Document) -> Document:
    """`document` with every lone surrogate in its id, text and questions replaced by U+FFFD."""
    fields = {"id": document.id, "text": document.text or "", "questions": "".join(document.questions)}
    found = {name: len(LONE_SURROGATE.findall(value)) for name, value in fields.items()}
    if not any(found.values()):
        return document
    document.id = LONE_SURROGATE.sub("\ufffd", document.id)
    document.text = document.text and LONE_SURROGATE.sub("\ufffd", document.text)
    document.questions, _ = repair_questions(document.questions)
    document.warning = lone_surrogates_warning(found)
    return document


def read_questions(path: str) -> list[str]:
    """One question per line; blank lines and lines starting with '#' are skipped."""
    try:
        lines = read_small_file(path).splitlines()  # /dev/zero filled gigabytes, then MemoryError
    except (OSError, ValueError) as err:  # UnicodeDecodeError and TooBigError are ValueErrors
        raise InputError(Errors.E009.format(path=path, reason=err)) from None
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
