"""Fit the span selector's feature weights on a SQuAD-format file: how the defaults were made.

    python benchmarks/fit_selector.py [FILE] [--l2 0.01] [--folds 5]

Runs pipelines/qa.cfg with EVERY candidate scored by the model (no shortlist) and records each
candidate's features (selection.FEATURES) and its F1 against the question's references. The
weights are then fitted by a softmax over each question's candidates whose target is its best
candidates (L2-regularised). Prints the cross-validated exact match / F1 of the candidate
questions (with the production shortlist: the `max_candidates` best by the features other
than the likelihood, then the best of those), the weights as pipeline config lines, and the
softmax temperature that makes the held-out confidence match how often the answer is exactly
right (with the expected calibration error before and after).
FILE defaults to the SQuAD *train* part in ../shared/data: the defaults were fitted there,
never on the dev part that benchmarks/squad_quality.py reports.
"""

import argparse
import math
import random
import time
from pathlib import Path

import torch
from _common import REPO, qa_pipeline, require_squad

from nlpipe.components.selection import FEATURES, REPLY_FEATURES, SpanSelector, candidate_features, softmax_share
from nlpipe.evaluation import calibration, evaluate_squad, exact_match, f1_score

SQUAD_TRAIN = REPO.parent / "shared" / "data" / "squad-train-v1.1-part.json"
NAMES = [name for name in FEATURES if name not in REPLY_FEATURES]  # scoring alone never generates


class RecordingSelector(SpanSelector):
    """Keeps every candidate (the model scores them all) and records their features."""

    def __init__(self, selector: SpanSelector):
        super().__init__(selector.max_sentences, 10**9, selector.weights, selector.temperature)
        self.records = []  # (question, candidate texts, feature rows)

    def choose(self, question, candidates, ranked, scores, reply_offsets=None, core=""):
        if candidates:
            rows = candidate_features(question, candidates, ranked[:self.max_sentences], scores, reply_offsets, core)
            self.records.append((question.text, [span.text for span in candidates], rows))
        return super().choose(question, candidates, ranked, scores, reply_offsets, core)


def record(path: Path) -> list[dict]:
    """One {features [candidates × NAMES], f1 [candidates], texts, references} per question."""
    nlp = qa_pipeline()
    qa = nlp.get_pipe("llama_qa")
    qa.selector = recorder = RecordingSelector(qa.selector)
    references = {p["question"]: p["references"] for p in evaluate_squad(nlp, path).predictions}
    questions = []
    for question, texts, rows in recorder.records:
        refs = references[question]
        questions.append({
            "features": torch.tensor([[row[name] for name in NAMES] for row in rows]),
            "f1": torch.tensor([max(f1_score(text, ref) for ref in refs) for text in texts]),
            "texts": texts, "references": refs})
    return questions


def fit(questions: list[dict], l2: float) -> torch.Tensor:
    weights = torch.zeros(len(NAMES), requires_grad=True)
    optimizer = torch.optim.LBFGS([weights], max_iter=300)
    answerable = [q for q in questions if q["f1"].max() > 0]

    def loss():
        optimizer.zero_grad()
        total = 0.0
        for q in answerable:
            target = (q["f1"] == q["f1"].max()).float()
            total = total - (target / target.sum() * torch.log_softmax(q["features"] @ weights, 0)).sum()
        total = total / len(answerable) + l2 * (weights ** 2).sum()
        total.backward()
        return total

    optimizer.step(loss)
    return weights.detach()


def choose(question: dict, weights: torch.Tensor, max_candidates: int) -> tuple[int, list[float]]:
    """As in production: shortlist by every feature but the likelihood, then the best. Returns
    the chosen candidate and the shortlist's combined scores, the chosen one first."""
    prior = question["features"].clone()
    prior[:, NAMES.index("likelihood")] = 0
    shortlist = torch.argsort(prior @ weights, descending=True)[:max_candidates]
    scores = question["features"][shortlist] @ weights
    best = int(torch.argmax(scores))
    return int(shortlist[best]), [float(scores[best])] + [float(s) for k, s in enumerate(scores) if k != best]


def cross_validate(questions: list[dict], l2: float, folds: int, max_candidates: int) -> list[dict]:
    """Held-out predictions: {exact_match, f1, scores} per question."""
    order = list(range(len(questions)))
    random.Random(0).shuffle(order)
    held_out_predictions = []
    for fold in range(folds):
        held_out = order[fold::folds]
        weights = fit([questions[i] for i in order if i not in set(held_out)], l2)
        for i in held_out:
            chosen, scores = choose(questions[i], weights, max_candidates)
            text, references = questions[i]["texts"][chosen], questions[i]["references"]
            held_out_predictions.append({"exact_match": max(exact_match(text, ref) for ref in references),
                                         "f1": max(f1_score(text, ref) for ref in references), "scores": scores})
    return held_out_predictions


def with_confidence(predictions: list[dict], temperature: float) -> list[dict]:
    return [{**p, "confidence": softmax_share(p["scores"], 0, temperature)} for p in predictions]


def fit_temperature(predictions: list[dict]) -> float:
    """The temperature whose confidences best predict exact matches (log-loss, on a grid)."""
    def log_loss(temperature):
        rated = with_confidence(predictions, temperature)
        eps = 1e-6
        return -sum(math.log(max(eps, p["confidence"] if p["exact_match"] else 1 - p["confidence"])) for p in rated)
    return min((t / 100 for t in range(20, 301, 2)), key=log_loss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", type=Path, default=SQUAD_TRAIN)
    parser.add_argument("--l2", type=float, default=0.01, help="L2 penalty on the weights")
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()
    started = time.perf_counter()
    questions = record(require_squad(args.file))
    max_candidates = SpanSelector().max_candidates
    held_out = cross_validate(questions, args.l2, args.folds, max_candidates)
    em, f1 = (100 * sum(p[key] for p in held_out) / len(held_out) for key in ("exact_match", "f1"))
    temperature = fit_temperature(held_out)
    weights = fit(questions, args.l2)
    print(f"{len(questions)} questions with candidates, {time.perf_counter() - started:.0f} s")
    print(f"{args.folds}-fold cross-validated on them: exact match {em:.1f}, F1 {f1:.1f}; expected calibration "
          f"error {calibration(with_confidence(held_out, 1.0))[1]:.3f} at temperature 1, "
          f"{calibration(with_confidence(held_out, temperature))[1]:.3f} at {temperature:.2f}")
    print("[components.llama_qa.selector]")
    print(f"temperature = {temperature:.2f}")
    print("[components.llama_qa.selector.weights]")
    for name, weight in zip(NAMES, weights.tolist()):
        print(f"{name} = {weight:.2f}")


if __name__ == "__main__":
    main()
