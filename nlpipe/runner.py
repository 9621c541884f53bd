"""The batch loop: stream documents through the pipeline, write one record per document, resume."""

import contextlib
import itertools
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from spacy.language import Language

from .config import JobSettings
from .errors import Errors, InputError
from .io.readers import Document, read_documents, read_questions
from .io.writers import JsonlWriter, completed_ids, doc_record
from .processing import process

# Documents per spaCy memory zone: large enough that restarting worker processes
# (n_process > 1) costs little, small enough that interned strings stay bounded.
ZONE_DOCUMENTS = 1000

# An engine turns documents (with the questions asked of all of them) into records, in any order,
# as a generator (run() closes it when it stops early): the local one below, or
# nlpipe.distributed's Ray engine. Resume, writing and the summary stay in run().
Engine = Callable[[Iterable[Document], list[str]], Iterator[dict]]


@dataclass
class RunSummary:
    documents: int = 0  # processed in this run
    failed: int = 0
    questions: int = 0
    grounded: int = 0  # answers that are a span of their document
    resumed: int = 0  # already in the output from an earlier, interrupted run
    seconds: float = 0.0

    @property
    def docs_per_second(self) -> float:
        return self.documents / self.seconds if self.seconds else 0.0

    @property
    def questions_per_second(self) -> float:
        return self.questions / self.seconds if self.seconds else 0.0


def skip_completed(documents: Iterable[Document], completed: Counter) -> Iterator[Document]:
    """Drop documents an earlier run already wrote (an id seen twice is skipped twice)."""
    for document in documents:
        if completed[document.id] > 0:
            completed[document.id] -= 1
            continue
        yield document


def _items(documents: Iterable[Document], questions: list[str]):
    for document in documents:
        if document.error is None and not document.text.strip():
            document.error = {"type": "empty_document", "message": "the document has no text"}
        if document.error is not None:
            # Travels as an empty text so that its error record keeps its place in the output.
            yield "", [], document
        else:
            yield document.text, [*document.questions, *questions], document


def _record(doc, document: Document, annotations: bool) -> dict:
    if document.error is not None:
        return {"id": document.id, "error": document.error}
    record = doc_record(document.id, doc, annotations)
    failures = [a["error"] for a in record.get("answers") or [] if a.get("error")]
    if failures:
        record["error"] = {"type": "generation_failed", "message": failures[0]}
    return record


def local_records(nlp: Language, settings: JobSettings) -> Engine:
    """The local engine: documents through `nlp` in this process (spaCy stage in `n_process`)."""
    def records(documents: Iterable[Document], questions: list[str]) -> Iterator[dict]:
        items = _items(documents, questions)
        while (first := next(items, None)) is not None:
            # Lazy: a zone is read as it is processed, so stdin input is answered batch by batch.
            zone = itertools.chain([first], itertools.islice(items, ZONE_DOCUMENTS - 1))
            # Strings spaCy interns for these documents are freed with the zone, so a long
            # run's memory stays flat; records are plain dicts, written before it closes.
            with nlp.memory_zone():
                for doc, document in process(nlp, zone, settings.batch_size, settings.n_process):
                    yield _record(doc, document, settings.annotations)
    return records


def run(nlp: Language | None, settings: JobSettings,
        on_record: Callable[[dict, RunSummary], None] = lambda r, s: None,
        overwrite: bool = False, engine: Engine | None = None) -> RunSummary:
    """Answer/annotate every document of `settings.input`, writing JSONL to `settings.output`.

    An output file that already holds records is resumed: those documents are skipped and new
    records appended (a torn last line from a killed run is cut off first). `overwrite` starts fresh.
    `engine` turns documents into records (default: `local_records(nlp, settings)`; `nlp` may
    be None when another engine is given).
    """
    if not settings.input:
        raise InputError(Errors.E006)
    if not settings.output:
        raise InputError(Errors.E007)
    engine = engine or local_records(nlp, settings)
    questions = read_questions(settings.questions) if settings.questions else []
    completed = Counter() if overwrite or settings.output == "-" else completed_ids(settings.output)
    summary = RunSummary(resumed=sum(completed.values()))
    documents = skip_completed(read_documents(settings.input), completed)
    started = time.perf_counter()
    # closing: an engine holding workers (Ray) stops them when the run stops early (Ctrl-C).
    with JsonlWriter(settings.output, append=not overwrite) as writer, \
            contextlib.closing(engine(documents, questions)) as records:
        for record in records:
            writer.write(record)
            answers = record.get("answers") or []
            summary.documents += 1
            summary.failed += "error" in record
            summary.questions += len(answers)
            summary.grounded += sum(a["start_char"] is not None for a in answers)
            summary.seconds = time.perf_counter() - started
            on_record(record, summary)
    summary.seconds = time.perf_counter() - started
    return summary
