"""Answers on the Doc: spans in `doc.spans["answers"]`, JSON-ready records in `doc._.answers`.

Both are written together from the same `Answer` objects. The records are the one stored
source (they live in `doc.user_data`, so DocBin and `nlp.to_disk` keep them); the answer spans'
extensions (`span._.question`, `span._.confidence`, ...) read the record of their question, so
two questions answered by the same words never overwrite each other's attributes.
"""

from dataclasses import dataclass

from spacy.tokens import Doc, Span, SpanGroup

SPAN_KEY = "answers"
_RECORDS = ("._.", "answers", None, None)  # where spaCy keeps a Doc extension's value
# The extensions of an answer span: each reads that key of its record.
SPAN_ATTRIBUTES = ("question", "question_index", "confidence", "no_answer", "logprob", "generated")


@dataclass
class Answer:
    """The answer to question `question_index` of a Doc: a span of it (offsets set), a free-form
    reply (text only), or nothing with an `error` ({"type", "message"})."""

    question: str
    question_index: int
    text: str = ""
    offsets: tuple[int, int] | None = None
    confidence: float | None = None
    evidence: Span | None = None  # the sentence (evidence unit) the answer comes from
    logprob: float | None = None  # the model's mean token log-prob of the reply, else of the span
    generated: str | None = None  # the raw reply, when one was generated
    error: dict | None = None
    # False when the document does not answer the question: then text is "" and confidence
    # is the chance that there is no answer.
    answerable: bool = True
    # The chance that the document does not answer the question, answered or not: the no-answer
    # model's (or, without candidates and in the reader mode, the reader's); None where none was
    # weighed (generated replies; grounded answers when answering whenever possible).
    no_answer: float | None = None
    # With top_k > 1: the k best distinct spans ({text, start_char, end_char, confidence}), best first.
    alternatives: list[dict] | None = None

    def record(self) -> dict:
        start, end = self.offsets if self.offsets is not None else (None, None)
        evidence = self.evidence
        record = {
            "question": self.question, "question_index": self.question_index, "text": self.text,
            "start_char": start, "end_char": end, "grounded": start is not None, "confidence": self.confidence,
            "evidence": evidence.text if evidence is not None else None,
            "evidence_start_char": evidence.start_char if evidence is not None else None,
            "evidence_end_char": evidence.end_char if evidence is not None else None,
            "logprob": self.logprob, "generated": self.generated,
            "answerable": None if self.error is not None else self.answerable, "no_answer": self.no_answer,
        }
        if self.alternatives is not None:
            record["alternatives"] = self.alternatives
        if self.error is not None:
            record["error"] = self.error
        return record


def set_answers(doc: Doc, answers: list[Answer]) -> None:
    """Replace the Doc's answers: records for all, a span for each answer that is one."""
    set_answer_records(doc, [answer.record() for answer in answers])


def set_answer_records(doc: Doc, records: list[dict]) -> None:
    """Replace the Doc's answers by their records (`Answer.record()`, e.g. read back from JSONL);
    each record with offsets also becomes a span."""
    doc.user_data[_RECORDS] = records
    spans = []
    for record in records:
        if record["start_char"] is not None:
            # Offsets are exact; the span covers the tokens they fall in.
            span = doc.char_span(record["start_char"], record["end_char"], alignment_mode="expand")
            spans.append(Span(doc, span.start, span.end, label=f"Q{record['question_index'] + 1}",
                              span_id=record["question_index"]))
    doc.spans[SPAN_KEY] = SpanGroup(doc, name=SPAN_KEY, spans=spans)


def answered(doc: Doc) -> bool:
    """Whether the Doc's answers were set (by llama_qa, or by hand), even to none."""
    return _RECORDS in doc.user_data


def _records(doc: Doc) -> list[dict]:
    records = doc.user_data.get(_RECORDS, [])
    if isinstance(records, tuple):
        # Lists again after a DocBin round trip, which gives sequences back as tuples (the
        # records' own list and each record's "alternatives"); once, so that later reads share them.
        records = doc.user_data[_RECORDS] = _lists(records)
    return list(records)


def _lists(value):
    if isinstance(value, dict):
        return {key: _lists(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_lists(item) for item in value]
    return value


def _set_records(doc: Doc, records: list[dict]) -> None:
    doc.user_data[_RECORDS] = records


def answer_record(span: Span) -> dict | None:
    """The record of the question an answer span answers."""
    return next((r for r in _records(span.doc) if r["question_index"] == span.id and r["start_char"] is not None),
                None)


def _span_attribute(name: str):
    def get(span: Span):
        record = answer_record(span)
        # .get: records written before a key existed (JSONL read back) lack it.
        return record.get(name) if record is not None else None
    return get


def _evidence(span: Span) -> Span | None:
    record = answer_record(span)
    if record is None or record["evidence_start_char"] is None:
        return None
    return span.doc.char_span(record["evidence_start_char"], record["evidence_end_char"], alignment_mode="expand")


def register_extensions() -> None:
    """`doc._.questions` (asked of this Doc besides the component's), `doc._.answers` (records,
    [] before any answering), `doc._.qa_error` (why the Doc could not be answered at all),
    `doc._.doc_id` and `doc._.qa_warning` (a batch run's document id and warning, kept in its
    DocBin output; llama_qa's, when it repaired the Doc's questions) and the answer spans' attributes."""
    for name, default in (("questions", None), ("qa_error", None), ("doc_id", None), ("qa_warning", None)):
        if not Doc.has_extension(name):
            Doc.set_extension(name, default=default)
    if not Doc.has_extension("answers"):
        Doc.set_extension("answers", getter=_records, setter=_set_records)
    for name in SPAN_ATTRIBUTES:
        if not Span.has_extension(name):
            Span.set_extension(name, getter=_span_attribute(name))
    if not Span.has_extension("evidence"):
        Span.set_extension("evidence", getter=_evidence)
