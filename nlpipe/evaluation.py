"""SQuAD evaluation: exact match and F1 with the official answer normalisation.

Reads SQuAD v1.1 and v2.0 files. A v2.0 question marked `is_impossible` has no references, and
(as in the official v2.0 script) only an empty prediction is right for it; results then also
report HasAns (answerable questions) and NoAns (unanswerable ones) separately."""

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
    if not predicted or not expected:  # "no answer" on either side: right only if both
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def scores(prediction: str, references: list[str]) -> tuple[float, float]:
    """(exact match, F1) against the best reference; with none (an unanswerable question) only
    the empty prediction is right."""
    references = references or [""]
    return (max(exact_match(prediction, r) for r in references), max(f1_score(prediction, r) for r in references))


@dataclass
class SquadParagraph:
    context: str
    questions: list[tuple[str, str, list[str]]]  # (id, question, reference answers: [] if unanswerable)
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
            yield SquadParagraph(paragraph["context"], [(qa["id"], qa["question"], _references(qa)) for qa in qas],
                                 str(article.get("title", "")))


def _references(qa: dict) -> list[str]:
    # v2.0 keeps the plausible-looking answers of an impossible question apart ("plausible_answers").
    return [] if qa.get("is_impossible") else [a["text"] for a in qa.get("answers", [])]


@dataclass
class Scores:
    """Exact match and F1 (percentages, as the official scripts print them) over some questions."""

    questions: int = 0
    exact_match: float = 0.0
    f1: float = 0.0

    @classmethod
    def of(cls, predictions: list[dict]) -> "Scores":
        n = len(predictions)
        if not n:
            return cls()
        return cls(n, 100 * sum(p["exact_match"] for p in predictions) / n, 100 * sum(p["f1"] for p in predictions) / n)


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
    from .components.llama_qa import LlamaQA  # here: llama_qa imports selection, which imports this module

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


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")


def unanswerable_questions(paragraphs: list[SquadParagraph]) -> list[SquadParagraph]:
    """One unanswerable question for each answerable one, made from the data itself: the same
    question about its own paragraph with every sentence that holds an answer cut out (the
    text is still about the question's topic, as SQuAD 2.0's are), or, where that leaves no
    text or still holds an answer, about the paragraph of the same article that shares most of
    the question's words without holding any of its answers. The two kinds alternate."""
    # Each context normalised once: every question of an article looks at all its paragraphs.
    by_article: dict[str, list[_Normalised]] = {}
    for paragraph in paragraphs:
        by_article.setdefault(paragraph.title, []).append(_Normalised.of(paragraph.context))
    made = []
    for paragraph in paragraphs:
        for k, (qid, question, references) in enumerate(paragraph.questions):
            if not references:
                continue
            answers = _answer_needles(references)
            context = _without_answers(paragraph.context, answers) if k % 2 == 0 else None
            kind = "cut"
            if context is None:
                context, kind = _other_paragraph(question, answers, by_article[paragraph.title]), "other"
            if context is not None:
                made.append(SquadParagraph(context, [(f"{qid}-noans-{kind}", question, [])], paragraph.title))
    return made


@dataclass
class _Normalised:
    """A text with its padded normalisation (_normal) and the set of its normalised words."""

    text: str
    normal: str
    words: set[str]

    @classmethod
    def of(cls, text: str) -> "_Normalised":
        normal = _normal(text)
        return cls(text, normal, set(normal.split()))


def _normal(text: str) -> str:
    """`text` normalised as SQuAD answers are, padded so that " answer " finds whole words."""
    return f" {normalize_answer(text)} "


def _answer_needles(references: list[str]) -> list[str]:
    """The references as _holds looks for them: normalised, padded, empty ones left out."""
    return [f" {normal} " for normal in map(normalize_answer, references) if normal]


def _holds(normal: str, needles: list[str]) -> bool:
    """Whether a text normalised by _normal holds one of the answers (see _answer_needles)."""
    return any(needle in normal for needle in needles)


def _without_answers(context: str, needles: list[str]) -> str | None:
    kept = [s for s in _SENTENCE_END.split(context) if not _holds(_normal(s), needles)]
    text = " ".join(kept)
    return text if len(kept) >= 2 and not _holds(_normal(text), needles) else None


def _other_paragraph(question: str, needles: list[str], paragraphs: list[_Normalised]) -> str | None:
    """The paragraph sharing most of the question's words among those that hold none of its answers."""
    words = set(normalize_answer(question).split())
    others = [p for p in paragraphs if not _holds(p.normal, needles)]
    best = max(others, key=lambda p: len(words & p.words), default=None)
    return best.text if best is not None else None


def write_squad(paragraphs: list[SquadParagraph], path) -> None:
    """A SQuAD 2.0 file of these paragraphs (questions without references are impossible)."""
    articles: dict[str, list[dict]] = {}
    for p in paragraphs:
        articles.setdefault(p.title, []).append({"context": p.context, "qas": [
            {"id": qid, "question": question, "is_impossible": not references,
             "answers": [{"text": r, "answer_start": p.context.find(r)} for r in references]}
            for qid, question, references in p.questions]})
    data = [{"title": title, "paragraphs": ps} for title, ps in articles.items()]
    Path(path).write_text(json.dumps({"version": "v2.0", "data": data}, ensure_ascii=False), encoding="utf-8")
