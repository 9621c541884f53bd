"""Stream documents from a folder, a JSONL file, a text file or stdin, one at a time.

A document that cannot be read becomes a `Document` with `error` set instead of stopping
the run: a batch job over many files must report bad ones and go on.
"""

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, TextIO

from ..errors import Errors, InputError

TEXT_SUFFIXES = (".txt", ".md")


@dataclass
class Document:
    id: str
    text: str | None
    questions: list[str] = field(default_factory=list)
    error: dict | None = None  # {"type", "message"} when the document could not be read


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


def read_file(path: Path, doc_id: str) -> Document:
    try:
        data = path.read_bytes()
    except OSError as err:
        return _failed(doc_id, "unreadable_file", err.strerror or str(err))
    return decode_text(doc_id, data)


def read_folder(folder: Path) -> Iterator[Document]:
    # Sorted, so that ids and order are the same on every run (resume depends on it).
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in TEXT_SUFFIXES and not p.is_dir()):
        yield read_file(path, path.relative_to(folder).as_posix())


def parse_jsonl_line(line: str, line_number: int, source: str) -> Document:
    doc_id = f"{source}:{line_number}"
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        return _failed(doc_id, "invalid_json", f"line {line_number} is not JSON: {err.msg}")
    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        return _failed(str(record.get("id", doc_id)) if isinstance(record, dict) else doc_id,
                       "missing_text", f"line {line_number} has no string field \"text\"")
    questions = record.get("questions") or []
    if isinstance(questions, str):
        questions = [questions]
    if not isinstance(questions, list) or not all(isinstance(q, str) for q in questions):
        return _failed(str(record.get("id", doc_id)), "invalid_questions",
                       f"line {line_number}: \"questions\" must be a list of strings")
    return Document(id=str(record.get("id", doc_id)), text=record["text"], questions=questions)


def read_jsonl(lines: TextIO, source: str) -> Iterator[Document]:
    for line_number, line in enumerate(lines, start=1):
        if line.strip():
            yield parse_jsonl_line(line, line_number, source)


def read_stdin(stream: TextIO) -> Iterator[Document]:
    """Lines that start with '{' are JSONL records; any other non-empty line is one text document."""
    for line_number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            yield parse_jsonl_line(line, line_number, "stdin")
        else:
            yield Document(id=f"stdin:{line_number}", text=line.rstrip("\n"))


def read_documents(source: str) -> Iterator[Document]:
    """Documents from `source`: a folder of .txt/.md files, a .jsonl file, a text file, or '-'."""
    if source == "-":
        yield from read_stdin(sys.stdin)
        return
    path = Path(source)
    if not path.exists():
        raise InputError(Errors.E008.format(path=source))
    if path.is_dir():
        yield from read_folder(path)
    elif path.suffix.lower() == ".jsonl":
        # errors="replace": one bad byte must not end the stream; the JSON parser reports the line.
        with open(path, encoding="utf-8", errors="replace") as lines:
            yield from read_jsonl(lines, path.name)
    else:
        yield read_file(path, path.name)


def read_questions(path: str) -> list[str]:
    """One question per line; blank lines and lines starting with '#' are skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(Errors.E009.format(path=path, reason=err)) from None
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
