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
from .metrics import Scores, auc, scores
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
            "confidence": answer.get("confidence"), "no_answer": answer.get("no_answer"),
            "generated": answer.get("generated"), "alternatives": answer.get("alternatives")}


@dataclass
class CalibrationBin:
    low: float
    high: float
    count: int
    predicted: float  # the mean predicted chance in the bin
    observed: float  # how often it came true there


def calibration(predictions: list[dict], n_bins: int = 5, key: str = "confidence",
                outcome: Callable[[dict], float] = lambda p: p["exact_match"]) -> tuple[list[CalibrationBin], float]:
    """How well the chance `key` predicts `outcome` (by default: `confidence`, an exactly right
    answer): per bin of the chance, its mean and how often the outcome came true; and the expected
    calibration error, their gap averaged over the predictions. Those without the chance (free-form
    replies; "no_answer" where none was weighed) are left out."""
    rated = [p for p in predictions if p.get(key) is not None]
    bins = []
    for k in range(n_bins):
        low, high = k / n_bins, (k + 1) / n_bins
        members = [p for p in rated if low <= p[key] < high or (k == n_bins - 1 and p[key] == 1.0)]
        if members:
            bins.append(CalibrationBin(low, high, len(members), sum(p[key] for p in members) / len(members),
                                       sum(outcome(p) for p in members) / len(members)))
    error = sum(b.count * abs(b.predicted - b.observed) for b in bins) / max(1, len(rated))
    return bins, error


@dataclass
class NoAnswerCheck:
    """How well the records' `no_answer` tells a v2.0 file's unanswerable questions."""
    bins: list[CalibrationBin]  # per bin of no_answer: how often the question had no answer
    error: float  # expected calibration error
    auc: float  # the chance that an unanswerable question gets more than an answerable one


def no_answer_check(predictions: list[dict], n_bins: int = 5) -> NoAnswerCheck | None:
    """None unless both kinds of question have a weighed `no_answer` (a v1.1 file, or answering
    whenever possible, has nothing to check)."""
    weighed = [p for p in predictions if p.get("no_answer") is not None]
    area = auc([p["no_answer"] for p in weighed], [not p["references"] for p in weighed])
    if area is None:
        return None
    return NoAnswerCheck(*calibration(weighed, n_bins, "no_answer", lambda p: float(not p["references"])), area)
