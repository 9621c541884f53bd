"""SQuAD evaluation: a pipeline's exact match and F1 over a SQuAD v1.1 or v2.0 file.

A v2.0 question marked `is_impossible` has no references, and (as in the official v2.0 script)
only an empty prediction is right for it; results then also report HasAns (answerable questions)
and NoAns (unanswerable ones) separately."""

import time
from dataclasses import dataclass, field
from typing import Callable

from spacy.language import Language
from spacy.tokens import Doc

from .components.llama_qa import LlamaQA
from .components.questions import question_type
from .metrics import Scores, scores
from .squad import read_squad


@dataclass
class EvalResult:
    questions: int = 0
    exact_match: float = 0.0  # percentages, as the official script prints them
    f1: float = 0.0
    spans: int = 0  # answers that are a span of their paragraph
    seconds: float = 0.0
    predictions: list[dict] = field(default_factory=list)
    has_answer: Scores = field(default_factory=Scores)  # the answerable questions (HasAns)
    no_answer: Scores = field(default_factory=Scores)  # the unanswerable ones (NoAns; v2.0 files)

    @property
    def questions_per_second(self) -> float:
        return self.questions / self.seconds if self.seconds else 0.0

    @classmethod
    def of(cls, predictions: list[dict], seconds: float = 0.0) -> "EvalResult":
        overall = Scores.of(predictions)
        return cls(overall.questions, overall.exact_match, overall.f1,
                   sum(p["start_char"] is not None for p in predictions), seconds, predictions,
                   Scores.of([p for p in predictions if p["references"]]),
                   Scores.of([p for p in predictions if not p["references"]]))


def evaluate_squad(nlp: Language, path, limit: int | None = None, batch_size: int = 8,
                   on_question: Callable[[int], None] = lambda n: None,
                   on_doc: Callable[[Doc], None] = lambda doc: None) -> EvalResult:
    """Run `nlp` (with a llama_qa component) over a SQuAD file; one Doc per paragraph, handed to
    `on_doc` once answered (its `doc._.doc_id` is "title #n"; predictions name it by `paragraph`,
    its 0-based place)."""
    paragraphs = list(read_squad(path, limit))

    def docs():
        for number, paragraph in enumerate(paragraphs):
            doc = nlp.make_doc(paragraph.context)
            doc._.questions = [q for _, q, _ in paragraph.questions]
            doc._.doc_id = f"{paragraph.title} #{number + 1}".strip()
            yield doc, (number, paragraph)

    predictions = []
    answering = [pipe for _, pipe in nlp.pipeline if isinstance(pipe, LlamaQA)]
    answered = 0

    def on_answered() -> None:
        nonlocal answered
        answered += 1
        on_question(answered)
    for pipe in answering:
        pipe.on_answered = on_answered
    started = time.perf_counter()
    try:
        for doc, (number, paragraph) in nlp.pipe(docs(), as_tuples=True, batch_size=batch_size):
            predictions += [prediction(nlp, doc, number, question) for question in paragraph.questions]
            on_doc(doc)
            # A question asked twice is answered once, a failed Doc's questions never one by one.
            answered = max(answered, len(predictions))
            on_question(answered)
    finally:
        for pipe in answering:
            pipe.on_answered = None
    return EvalResult.of(predictions, time.perf_counter() - started)


def prediction(nlp: Language, doc: Doc, paragraph: int, question: tuple[str, str, list[str]]) -> dict:
    """One question's prediction, scored against its references, from its paragraph's answered Doc."""
    qid, text, references = question
    answer = next((a for a in doc._.answers or [] if a["question"] == text.strip()), {})
    predicted = answer.get("text") or ""
    em, f1 = scores(predicted, references)
    return {"id": qid, "question": text, "prediction": predicted, "references": references, "exact_match": em,
            "f1": f1, "question_type": question_type(nlp.make_doc(text)), "paragraph": paragraph,
            "start_char": answer.get("start_char"), "answerable": answer.get("answerable"),
            "confidence": answer.get("confidence"), "generated": answer.get("generated"),
            "alternatives": answer.get("alternatives")}


@dataclass
class CalibrationBin:
    low: float
    high: float
    count: int
    confidence: float  # mean confidence of the answers in the bin
    exact_match: float  # the share of them that are exactly right


def calibration(predictions: list[dict], n_bins: int = 5) -> tuple[list[CalibrationBin], float]:
    """How well `confidence` predicts an exactly right answer: per confidence bin, the mean
    confidence and the share right; and the expected calibration error, their gap averaged over
    the answers. Predictions without a confidence (free-form replies) are left out."""
    rated = [p for p in predictions if p.get("confidence") is not None]
    bins = []
    for k in range(n_bins):
        low, high = k / n_bins, (k + 1) / n_bins
        members = [p for p in rated if low <= p["confidence"] < high or (k == n_bins - 1 and p["confidence"] == 1.0)]
        if members:
            bins.append(CalibrationBin(low, high, len(members), sum(p["confidence"] for p in members) / len(members),
                                       sum(p["exact_match"] for p in members) / len(members)))
    error = sum(b.count * abs(b.confidence - b.exact_match) for b in bins) / max(1, len(rated))
    return bins, error
