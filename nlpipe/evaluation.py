"""SQuAD v1.1 evaluation: exact match and F1 with the official answer normalisation."""

import json
import re
import string
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from spacy.language import Language
from spacy.tokens import Doc

from .components.questions import question_type
from .errors import Errors, InputError


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation and articles, squeeze whitespace (the official v1.1 rules)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(truth))


def f1_score(prediction: str, truth: str) -> float:
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(truth).split()
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


@dataclass
class SquadParagraph:
    context: str
    questions: list[tuple[str, str, list[str]]]  # (id, question, reference answers)
    title: str = ""  # the article's


def read_squad(path, limit: int | None = None) -> Iterator[SquadParagraph]:
    """Paragraphs of a SQuAD-format file, holding at most `limit` questions in all."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))["data"]
    except (OSError, ValueError, KeyError) as err:
        raise InputError(Errors.E022.format(path=path, reason=err)) from None
    remaining = limit if limit is not None else float("inf")
    for article in data:
        for paragraph in article["paragraphs"]:
            if remaining <= 0:
                return
            qas = paragraph["qas"][:int(min(remaining, len(paragraph["qas"])))]
            remaining -= len(qas)
            yield SquadParagraph(paragraph["context"], [
                (qa["id"], qa["question"], [a["text"] for a in qa["answers"]]) for qa in qas],
                str(article.get("title", "")))


@dataclass
class EvalResult:
    questions: int = 0
    exact_match: float = 0.0  # percentages, as the official script prints them
    f1: float = 0.0
    spans: int = 0  # answers that are a span of their paragraph
    seconds: float = 0.0
    predictions: list[dict] = field(default_factory=list)

    @property
    def questions_per_second(self) -> float:
        return self.questions / self.seconds if self.seconds else 0.0


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

    result = EvalResult()
    exact_total = f1_total = 0.0
    started = time.perf_counter()
    for doc, (number, paragraph) in nlp.pipe(docs(), as_tuples=True, batch_size=batch_size):
        answers = {a["question"]: a for a in doc._.answers or []}
        for qid, question, references in paragraph.questions:
            answer = answers.get(question.strip(), {})
            prediction = answer.get("text") or ""
            em = max(exact_match(prediction, r) for r in references)
            f1 = max(f1_score(prediction, r) for r in references)
            exact_total, f1_total = exact_total + em, f1_total + f1
            result.spans += answer.get("start_char") is not None
            result.predictions.append({"id": qid, "question": question, "prediction": prediction,
                                       "references": references, "exact_match": em, "f1": f1,
                                       "question_type": question_type(nlp.make_doc(question)),
                                       "paragraph": number,
                                       "start_char": answer.get("start_char"),
                                       "confidence": answer.get("confidence"),
                                       "generated": answer.get("generated")})
        result.questions += len(paragraph.questions)
        on_doc(doc)
        on_question(result.questions)
    result.seconds = time.perf_counter() - started
    if result.questions:
        result.exact_match = 100 * exact_total / result.questions
        result.f1 = 100 * f1_total / result.questions
    return result


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
