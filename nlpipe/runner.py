"""The batch loop: stream documents through the pipeline and write one record per document."""

import time
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from spacy.language import Language
from spacy.tokens import Doc

from .config import JobSettings
from .errors import Errors, InputError
from .io.readers import Document, read_documents, read_questions
from .io.writers import JsonlWriter, doc_record


@dataclass
class RunSummary:
    documents: int = 0
    failed: int = 0
    questions: int = 0
    grounded: int = 0  # answers that are a span of their document
    seconds: float = 0.0

    @property
    def docs_per_second(self) -> float:
        return self.documents / self.seconds if self.seconds else 0.0

    @property
    def questions_per_second(self) -> float:
        return self.questions / self.seconds if self.seconds else 0.0


def _docs(nlp: Language, documents: Iterable[Document], questions: list[str]) -> Iterator[tuple[Doc, Document]]:
    """Docs ready for the pipeline, each with its questions. A document that failed to read
    travels as an empty Doc so that its error record keeps its place in the output order."""
    for document in documents:
        if document.error is None:
            try:
                doc = nlp.make_doc(document.text)
            except ValueError as err:  # spaCy's max_length guard, among others
                document.error = {"type": "too_long", "message": str(err).strip().splitlines()[0]}
        if document.error is not None:
            doc = nlp.make_doc("")
        doc._.questions = [*document.questions, *questions] if document.error is None else []
        yield doc, document


def run(nlp: Language, settings: JobSettings, on_record: Callable[[dict, RunSummary], None] = lambda r, s: None) -> RunSummary:
    """Answer/annotate every document of `settings.input`, writing JSONL to `settings.output`."""
    if not settings.input:
        raise InputError(Errors.E006)
    if not settings.output:
        raise InputError(Errors.E007)
    questions = read_questions(settings.questions) if settings.questions else []
    documents = read_documents(settings.input)
    summary = RunSummary()
    started = time.perf_counter()
    with JsonlWriter(settings.output) as writer:
        for doc, document in nlp.pipe(_docs(nlp, documents, questions), as_tuples=True,
                                      batch_size=settings.batch_size):
            if document.error is not None:
                record = {"id": document.id, "error": document.error}
                summary.failed += 1
            else:
                record = doc_record(document.id, doc, settings.annotations)
                answers = record.get("answers") or []
                summary.questions += len(answers)
                summary.grounded += sum(a["start_char"] is not None for a in answers)
            writer.write(record)
            summary.documents += 1
            summary.seconds = time.perf_counter() - started
            on_record(record, summary)
    summary.seconds = time.perf_counter() - started
    return summary
