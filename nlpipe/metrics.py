"""SQuAD's answer scores: exact match and word-overlap F1 after the official answer normalisation;
and the AUC of a score that ranks one kind above another."""

import bisect
import re
import string
from collections import Counter
from dataclasses import dataclass


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation and articles, squeeze whitespace (the official v1.1 rules)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(truth))


def f1_score(prediction: str, truth: str) -> float:
    return word_f1(normalize_answer(prediction).split(), normalize_answer(truth).split())


def word_f1(predicted: list[str], expected: list[str]) -> float:
    """The F1 of the words two answers share (with repeats), as SQuAD scores an answer; the
    caller splits and normalises the words."""
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
class Scores:
    """Exact match and F1 (percentages, as the official scripts print them) over some questions."""

    questions: int = 0
    exact_match: float = 0.0
    f1: float = 0.0

    @classmethod
    def of(cls, predictions: list[dict]) -> "Scores":
        """The mean of predictions' "exact_match" and "f1" (each 0 to 1), as percentages."""
        n = len(predictions)
        if not n:
            return cls()
        return cls(n, 100 * sum(p["exact_match"] for p in predictions) / n, 100 * sum(p["f1"] for p in predictions) / n)


def auc(scores: list[float], positive: list[bool]) -> float | None:
    """The chance that a positive scores above a negative (ties half); None without both."""
    negatives = sorted(s for s, p in zip(scores, positive) if not p)
    positives = [s for s, p in zip(scores, positive) if p]
    if not negatives or not positives:
        return None
    above = sum(bisect.bisect_left(negatives, s) + 0.5 * (bisect.bisect_right(negatives, s)
                                                          - bisect.bisect_left(negatives, s)) for s in positives)
    return above / (len(positives) * len(negatives))
