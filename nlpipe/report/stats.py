"""The numbers a report's summary shows, gathered one Doc at a time (a report streams its Docs)."""

from dataclasses import astuple, dataclass, field

from spacy.tokens import Doc

from ..metrics import Scores

HISTOGRAM_BINS = 10
LISTED_ERRORS = 100  # documents with errors linked from the summary; the rest are counted
WORST_ANSWERS = 20


def doc_errors(doc: Doc) -> list[dict]:
    """The Doc's own error, then each failed question's."""
    errors = [doc._.qa_error] if doc._.qa_error else []
    return errors + [a["error"] for a in doc._.answers if a.get("error")]


def _no_answer(answer: dict) -> bool:
    return answer.get("answerable") is False and not answer.get("error")


@dataclass
class RunStats:
    documents: int = 0
    questions: int = 0
    grounded: int = 0
    no_answer: int = 0  # questions the document does not answer, by the model's no-answer decision
    failed_documents: int = 0
    failed_questions: int = 0
    warnings: int = 0
    confidences: list[int] = field(default_factory=lambda: [0] * HISTOGRAM_BINS)  # answers per bin
    failures: list[tuple[int, str, str]] = field(default_factory=list)  # (index, id, error type), the first ones

    def add(self, index: int, doc: Doc) -> None:
        answers = doc._.answers
        self.documents += 1
        self.questions += len(answers)
        self.grounded += sum(a["start_char"] is not None for a in answers)
        self.no_answer += sum(_no_answer(a) for a in answers)
        self.failed_questions += sum(bool(a.get("error")) for a in answers)
        self.warnings += doc._.qa_warning is not None
        for answer in answers:
            # A "no answer"'s confidence is the probability that there is none, not an answer's.
            if answer.get("confidence") is not None and not _no_answer(answer):
                self.confidences[min(int(answer["confidence"] * HISTOGRAM_BINS), HISTOGRAM_BINS - 1)] += 1
        errors = doc_errors(doc)
        if errors:
            self.failed_documents += 1
            if len(self.failures) < LISTED_ERRORS:
                self.failures.append((index, doc._.doc_id or "", str(errors[0].get("type", "error"))))

    @property
    def grounded_share(self) -> float:
        return self.grounded / self.questions if self.questions else 0.0


@dataclass
class TypeScore:
    question_type: str
    questions: int
    exact_match: float  # percentages, as `nlpipe eval squad` prints them
    f1: float


@dataclass
class EvalStats:
    questions: int
    exact_match: float
    f1: float
    by_type: list[TypeScore]
    worst: list[dict]  # predictions, lowest F1 first; among equals the most confident first


def eval_stats(predictions: list[dict]) -> EvalStats:
    """EM/F1 overall and by question type, and the worst answers, of `evaluate_squad`'s predictions."""
    by_type: dict[str, list[dict]] = {}
    for prediction in predictions:
        by_type.setdefault(prediction.get("question_type") or "other", []).append(prediction)
    types = [TypeScore(name, *astuple(Scores.of(group))) for name, group in by_type.items()]
    types.sort(key=lambda t: (-t.questions, t.question_type))
    worst = sorted(predictions, key=lambda p: (p["f1"], -(p.get("confidence") or 0.0)))[:WORST_ANSWERS]
    return EvalStats(*astuple(Scores.of(predictions)), types, worst)
