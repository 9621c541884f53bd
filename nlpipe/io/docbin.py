"""Docs from a run's JSONL records: its DocBin (`.spacy`) output, and the Docs a report reads.

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

from ..errors import Errors, InputError
from .records import record_doc
from .writers import temporary_path

DOCBIN_SUFFIX = ".spacy"


def is_docbin(path: str) -> bool:
    return path != "-" and Path(path).suffix.lower() == DOCBIN_SUFFIX


def records_path(output: str) -> str:
    """Where a run writes its JSONL records: the output itself, or beside a `.spacy` output."""
    return f"{output}.jsonl" if is_docbin(output) else output


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
