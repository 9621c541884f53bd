"""The batch loop: stream documents through the pipeline, write one record per document, resume."""

import contextlib
import hashlib
import itertools
import json
import time
from array import array
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Protocol

import numpy as np
from spacy.language import Language

from .config import JobSettings
from .errors import Errors, InputError
from .events import JobEvents
from .io.docbin import records_path, write_docbin
from .io.readers import TEXT_SUFFIXES, Document, check_source, load_document, read_documents, read_questions
from .io.records import doc_record
from .io.writers import (JsonlWriter, OutputIndex, OutputLock, digest, drop_lines, real_path, scan_output,
                         temporary_path)
from .processing import load_models, process, qa_components

# Documents per spaCy memory zone: large enough that restarting worker processes
# (n_process > 1) costs little, small enough that interned strings stay bounded.
ZONE_DOCUMENTS = 1000

# What travels with a document through an engine and comes back with its record: the runner's
# (input fingerprint, offset of the output line the record replaces).
Tag = tuple[str | None, int | None]
Pending = Iterable[tuple[Document, list[str], Tag]]


class Engine(Protocol):
    """What turns documents into records: LocalEngine below, or nlpipe.distributed's RayEngine.
    Resume, writing and the summary stay in run()."""

    # True: the engine reads files in its own tasks. It gets a folder's documents unread
    # (Document.path set, input fingerprint None in the tag) unless resume had to read them, and
    # returns the tag with the fingerprint.
    reads_files: bool

    def start(self) -> None:
        """Once every check has passed, before the first document: load what the work needs."""

    def records(self, pending: Pending) -> Iterator[tuple[dict, Tag]]:
        """(document, its questions, tag) in, (record, tag) out, in any order, as a generator
        (run() closes it when it stops early)."""

@dataclass
class RunSummary:
    documents: int = 0  # processed in this run
    failed: int = 0
    questions: int = 0
    grounded: int = 0  # answers that are a span of their document
    no_answer: int = 0  # questions the document does not answer (answerable false)
    resumed: int = 0  # already in the output from an earlier run, with the same fingerprint
    redone: int = 0  # in the output, but their text, questions or failure asked for a new record
    total: int | None = None  # documents in the input, where that is cheap to count
    nothing_asked: bool = False  # a question-answering run in which no document had a question
    seconds: float = 0.0

    @property
    def docs_per_second(self) -> float:
        return self.documents / self.seconds if self.seconds else 0.0

    @property
    def questions_per_second(self) -> float:
        return self.questions / self.seconds if self.seconds else 0.0

    @property
    def eta_seconds(self) -> float | None:
        """Time left at the rate so far, or None before the first record or without a total."""
        if self.total is None or not self.documents:
            return None
        left = max(self.total - self.documents - self.resumed, 0)
        return left / self.docs_per_second


def fingerprint(*parts) -> str:
    """A short, stable hash of JSON-able parts: what produced a record."""
    data = json.dumps(parts, ensure_ascii=False, sort_keys=True).encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()[:16]


def config_fingerprint(nlp: Language, settings: JobSettings) -> str:
    """Everything in the config that changes a record: the pipeline and whether tokens are written."""
    return fingerprint(nlp.config.to_str(), settings.writes_annotations)


class Resume:
    """Matches the input's documents with the records an earlier run wrote.

    A document whose fingerprint is in the output is skipped; one whose fingerprint changed (or
    whose record is an error, with `retry_failed`) is done again and its old line dropped once
    the new record is written. An id may occur several times: each occurrence takes one record.
    What it keeps is a byte or two per record of the output (see OutputIndex), nothing per
    document of the input.
    """

    def __init__(self, index: OutputIndex, retry_failed: bool):
        self.index = index
        self.retry_failed = retry_failed
        self.replaced = array("q")  # offsets of the old lines whose documents were written anew
        self.taken = bytearray(index.count)  # records a document of the input matched (done or redone)
        self.seen = bytearray(index.count)  # records whose id the input has

    def _untaken(self, doc_id: str) -> list[int]:
        return [i for i in self.index.positions(doc_id) if not self.taken[i]]

    def knows(self, doc_id: str) -> bool:
        """Whether the output holds a record for `doc_id` still unmatched: only then does match()
        need the document's fingerprint."""
        return bool(self._untaken(doc_id))

    def match(self, doc_id: str, input_fingerprint: str | None) -> tuple[bool, int | None]:
        """(whether the document is done already, the offset of the line its new record replaces)."""
        written = self._untaken(doc_id)
        if not written:
            return False, None
        for i in written:
            self.seen[i] = True
        key = digest(doc_id, input_fingerprint)
        same = next((i for i in written if self.index.inputs[i] == key), None)
        if same is not None and not (self.retry_failed and self.index.failed[same]):
            self.taken[same] = True
            return True, None
        stale = written[0] if same is None else same
        self.taken[stale] = True
        return False, int(self.index.offsets[stale])

    def dropped(self, finished: bool) -> np.ndarray:
        """Offsets, ascending, of the lines to drop: the old line of every document written anew and,
        once the run `finished`, of documents the input still has but no longer matches (e.g. both
        the old and the new record after a kill between writing one and dropping the other)."""
        dropped = np.frombuffer(self.replaced, np.int64)
        if finished:
            leftovers = np.frombuffer(self.seen, np.bool_) & ~np.frombuffer(self.taken, np.bool_)
            dropped = np.concatenate([dropped, self.index.offsets[leftovers]])
        return np.unique(dropped)


def check_arguments(settings: JobSettings) -> list[str]:
    """Every check on input, output and questions that needs no model; returns the questions."""
    if not settings.input:
        raise InputError(Errors.E006)
    if not settings.output:
        raise InputError(Errors.E007)
    if Path(settings.output).suffix.lower() in (".html", ".htm"):
        raise InputError(Errors.E094.format(path=settings.output))
    check_source(settings.input)
    questions = read_questions(settings.questions) if settings.questions else []
    if settings.questions and not questions:
        raise InputError(Errors.E045.format(path=settings.questions))
    if settings.output != "-":
        _check_output_path(settings)
    return questions


def _check_output_path(settings: JobSettings) -> None:
    for output in dict.fromkeys((Path(settings.output), Path(records_path(settings.output)))):
        if output.exists() and not output.is_file():
            raise InputError(Errors.E023.format(path=output, reason="it is not a regular file"))
        for role, other in (("input", settings.input), ("questions file", settings.questions)):
            if other and other != "-" and _same_file(output, Path(other)):
                raise InputError(Errors.E042.format(path=output, role=role, other=other))
        folder = Path(settings.input)
        if (settings.input != "-" and folder.is_dir() and output.suffix.lower() in TEXT_SUFFIXES
                and folder.resolve() in output.resolve().parents):
            raise InputError(Errors.E042.format(path=output, role="input (a file the input folder would read)",
                                                other=settings.input))


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return a.samefile(b)
    return a.resolve() == b.resolve()


def check_questions(nlp: Language, settings: JobSettings, questions: list[str]) -> None:
    """A question-answering pipeline needs questions from somewhere: E046 when none can come."""
    answering = qa_components(nlp)
    if not answering or questions or any(component.questions for component in answering):
        return
    per_document = settings.input == "-" or Path(settings.input).suffix.lower() == ".jsonl"
    if not per_document:
        raise InputError(Errors.E046.format(component=answering[0].name))


def count_documents(source: str) -> int | None:
    """The number of documents in `source` without reading them, or None for stdin."""
    if source == "-":
        return None
    path = Path(source)
    if path.is_dir():
        return sum(1 for p in path.rglob("*") if p.suffix.lower() in TEXT_SUFFIXES and p.is_file())
    if path.suffix.lower() != ".jsonl":
        return 1
    lines, last = 0, b"\n"
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            lines, last = lines + chunk.count(b"\n"), chunk[-1:]
    return lines + (last != b"\n")  # blank lines count too: a cheap total, not an exact one


def document_fingerprint(document: Document, questions: list[str]) -> str:
    """What a record was made from: the document's text (or failure) and the questions asked."""
    return fingerprint(document.text, questions, document.error)


def _pending(documents: Iterable[Document], questions: list[str], resume: Resume, summary: RunSummary,
             max_chars: int) -> Pending:
    """(document, its questions, (input fingerprint, line it replaces)) of each document to do.

    An unread document (Document.path) is read here only if the output has a record with its
    id, whose fingerprint decides whether it is done; the others go unread to the engine."""
    for document in documents:
        if document.path is not None and resume.knows(document.id):
            document = load_document(document, max_chars)
        document_questions = [*document.questions, *questions]
        input_fingerprint = None if document.path is not None else document_fingerprint(document, document_questions)
        done, stale = resume.match(document.id, input_fingerprint)
        if done:
            summary.resumed += 1
            continue
        summary.redone += stale is not None
        yield document, document_questions, (input_fingerprint, stale)


def _items(pending: Pending):
    for document, questions, (input_fingerprint, stale) in pending:
        # Of what was read, before an empty text becomes an error (resume compares the same).
        context = (document, (input_fingerprint or document_fingerprint(document, questions), stale))
        if document.error is None and not document.text.strip():
            document.error = {"type": "empty_document", "message": "the document has no text"}
        if document.error is not None:
            # Travels as an empty text so that its error record keeps its place in the output.
            yield "", [], context
        else:
            yield document.text, questions, context


def _record(doc, document: Document, annotations: bool) -> dict:
    if document.error is not None:
        return {"id": document.id, "error": document.error}
    record = doc_record(document.id, doc, annotations)
    # The Doc's own failure (its questions were not a list of strings), else its first question's.
    failures = [doc._.qa_error] if doc.has_extension("qa_error") and doc._.qa_error else []
    failures += [a["error"] for a in record.get("answers") or [] if a.get("error")]
    if failures:
        record["error"] = failures[0]
    if document.warning is not None:
        record["warning"] = document.warning
    return record


def open_output(output: str, overwrite: bool):
    """The lock held while `output` is read and written (none for stdout)."""
    return nullcontext() if output == "-" else OutputLock(output, in_place=not overwrite)


def run(nlp: Language, settings: JobSettings, on_record: Callable[[dict, RunSummary], None] = lambda r, s: None,
        overwrite: bool = False, append: bool = False, retry_failed: bool = False,
        on_ready: Callable[[], None] = lambda: None, engine: Engine | None = None) -> RunSummary:
    """Answer/annotate every document of `settings.input`, writing JSONL to `settings.output`
    (a `.spacy` output: JSONL to `<output>.jsonl`, and the DocBin from it whenever the run stops).

    An existing output is resumed: documents whose record has the same fingerprint (text,
    questions) are skipped, changed ones and, with `retry_failed`, failed ones are done again.
    It must have been written with the same config unless `append`; `overwrite` starts afresh.
    Once every check has passed, the engine starts (the local one loads the models) and then
    `on_ready` runs, before the first document. `engine` turns documents into records (default:
    LocalEngine(nlp, settings)); `nlp` is still what the config built, for its fingerprint and checks.
    """
    if overwrite and append:
        raise InputError(Errors.E047)
    questions = check_arguments(settings)
    check_questions(nlp, settings, questions)
    engine = engine or LocalEngine(nlp, settings)
    config = config_fingerprint(nlp, settings)
    # The real files, through symbolic links: what is locked, read, and replaced in one step (a
    # link replaced by a file would leave its target, and the records in it, behind).
    output, records = real_path(settings.output), real_path(records_path(settings.output))
    with open_output(records, overwrite):
        index = OutputIndex() if overwrite or records == "-" else scan_output(records)
        if index.count and index.config != config and not append:
            raise InputError(Errors.E044.format(path=records, old=index.config, new=config))
        _check_docbin_is_ours(output, records, overwrite)
        for path in {output, records} - {"-"}:
            temporary_path(path).unlink(missing_ok=True)  # left by a run killed while replacing
        engine.start()
        on_ready()
        exists = records != "-" and Path(records).is_file()
        writer = JsonlWriter(records, append_at=index.complete_bytes if exists and not overwrite else None,
                             replace=overwrite and exists)
        try:
            summary = _write_all(engine, settings, records, questions, config, writer, Resume(index, retry_failed),
                                 on_record)
        finally:
            # Also after Ctrl-C or a failure: the DocBin holds every record written so far.
            if records != output and Path(records).is_file():
                write_docbin(records, output)
    summary.nothing_asked = bool(qa_components(nlp)) and not summary.questions and summary.documents > summary.failed
    return summary


def _check_docbin_is_ours(output: str, records: str, overwrite: bool) -> None:
    """A `.spacy` file without its records is someone else's (or its records are gone): E093."""
    if records != output and not overwrite and Path(output).exists() and not Path(records).exists():
        raise InputError(Errors.E093.format(path=output, records=records))


class LocalEngine:
    """Documents through `nlp` in this process (its spaCy stage in `settings.n_process` workers)."""

    reads_files = False

    def __init__(self, nlp: Language, settings: JobSettings, events: JobEvents = JobEvents()):
        self.nlp, self.settings, self.events = nlp, settings, events

    def start(self) -> None:
        load_models(self.nlp, self.events)

    def records(self, pending: Pending) -> Iterator[tuple[dict, Tag]]:
        items = _items(pending)
        while (first := next(items, None)) is not None:
            # Lazy: a zone is read as it is processed, so stdin input is answered batch by batch.
            zone = itertools.chain([first], itertools.islice(items, ZONE_DOCUMENTS - 1))
            # Strings spaCy interns for these documents are freed with the zone, so a long
            # run's memory stays flat; records are plain dicts, written before it closes.
            with self.nlp.memory_zone():
                for doc, (document, tag) in process(self.nlp, zone, self.settings.batch_size,
                                                    self.settings.n_process):
                    yield _record(doc, document, self.settings.writes_annotations), tag


def _write_all(engine: Engine, settings: JobSettings, output: str, questions: list[str], config: str,
               writer: JsonlWriter, resume: Resume, on_record: Callable[[dict, RunSummary], None]) -> RunSummary:
    summary = RunSummary(total=count_documents(settings.input))
    documents = read_documents(settings.input, settings.max_document_chars, load=not engine.reads_files)
    pending = _pending(documents, questions, resume, summary, settings.max_document_chars)
    started = time.perf_counter()
    finished = False
    try:
        # closing: an engine holding workers (Ray) stops them when the run stops early (Ctrl-C).
        with writer, contextlib.closing(engine.records(pending)) as results:
            for record, (input_fingerprint, stale) in results:
                record["fingerprint"] = {"input": input_fingerprint, "config": config}
                writer.write(record)
                if stale is not None:
                    resume.replaced.append(stale)
                _count(summary, record, started)
                on_record(record, summary)
        finished = True
    finally:
        # Also after Ctrl-C: the old line of every document written anew goes, nothing else.
        dropped = resume.dropped(finished)
        if len(dropped):
            drop_lines(output, dropped)
    summary.seconds = time.perf_counter() - started
    return summary


def _count(summary: RunSummary, record: dict, started: float) -> None:
    answers = record.get("answers") or []
    summary.documents += 1
    summary.failed += "error" in record
    summary.questions += len(answers)
    summary.grounded += sum(a["start_char"] is not None for a in answers)
    summary.no_answer += sum(a.get("answerable") is False for a in answers)
    summary.seconds = time.perf_counter() - started
