"""Turn annotated Docs into JSON records and write them one line at a time."""

import json
import sys
from collections import Counter
from pathlib import Path

from spacy.tokens import Doc

from ..errors import Errors, InputError


def doc_record(doc_id: str, doc: Doc, annotations: bool = False) -> dict:
    record = {"id": doc_id}
    if doc.has_extension("answers") and doc._.answers is not None:
        record["answers"] = doc._.answers
    record["entities"] = [{"text": e.text, "label": e.label_, "start_char": e.start_char, "end_char": e.end_char}
                          for e in doc.ents]
    if annotations:
        record["sentences"] = ([{"start_char": s.start_char, "end_char": s.end_char} for s in doc.sents]
                               if doc.has_annotation("SENT_START") else [])
        record["tokens"] = [{"i": t.i, "text": t.text, "start_char": t.idx, "pos": t.pos_, "tag": t.tag_,
                             "lemma": t.lemma_, "dep": t.dep_, "head": t.head.i, "ent": t.ent_type_}
                            for t in doc]
    return record


def completed_ids(path: str) -> Counter:
    """Ids of the records already in the JSONL file `path` (empty if there is none).

    A run killed mid-write leaves a torn last line: it is cut off here, so the resumed run
    rewrites that document instead of leaving a broken line in the output.
    """
    path = Path(path)
    if not path.is_file():
        return Counter()
    data = path.read_bytes()
    good_end, ids = 0, Counter()
    for line in data.splitlines(keepends=True):
        try:
            if not line.endswith(b"\n"):
                raise ValueError("no newline: the write was interrupted")
            ids[json.loads(line)["id"]] += 1
        except (ValueError, KeyError, TypeError):
            break
        good_end += len(line)
    if good_end < len(data):
        with open(path, "r+b") as out:
            out.truncate(good_end)
    return ids


class JsonlWriter:
    """Writes one JSON line per record and flushes it, so a crash loses at most the line in flight.

    `append` continues an existing file (resume); otherwise the file starts empty.
    """

    def __init__(self, target: str, append: bool = False):
        self.target = target
        self.append = append
        self._stream = None

    def __enter__(self) -> "JsonlWriter":
        if self.target == "-":
            self._stream = sys.stdout
        else:
            try:
                Path(self.target).parent.mkdir(parents=True, exist_ok=True)
                self._stream = open(self.target, "a" if self.append else "w", encoding="utf-8")
            except OSError as err:
                raise InputError(Errors.E023.format(path=self.target, reason=err.strerror or err)) from None
        return self

    def write(self, record: dict) -> None:
        self._stream.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._stream.flush()

    def __exit__(self, *exc) -> None:
        if self._stream is not sys.stdout:
            self._stream.close()
