"""Fit the span selector's weights and temperature to recorded candidate features.

Each question is {"features": [candidates x features] tensor, "f1": [candidates] tensor (each
candidate's F1 against the references), "texts": candidate texts, "references": answers}. The
weights are those of a softmax over each question's candidates whose target is its best ones
(L2-regularised); the temperature makes held-out confidence match how often the answer is exactly
right. benchmarks/fit_selector.py records the features with the real model and writes the
weights file (selection.read_weights reads it).
"""

import json
import math
import random
from pathlib import Path

import torch

from ..evaluation import exact_match, f1_score
from .selection import softmax_share


def fit(questions: list[dict], l2: float) -> torch.Tensor:
    weights = torch.zeros(questions[0]["features"].shape[1], requires_grad=True)
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


def choose(question: dict, weights: torch.Tensor, max_candidates: int, names: list[str]) -> tuple[int, list[float]]:
    """As in production: shortlist by every feature but the likelihood, then the best. Returns
    the chosen candidate and the shortlist's combined scores, the chosen one first."""
    prior = question["features"].clone()
    prior[:, names.index("likelihood")] = 0
    shortlist = torch.argsort(prior @ weights, descending=True)[:max_candidates]
    scores = question["features"][shortlist] @ weights
    best = int(torch.argmax(scores))
    return int(shortlist[best]), [float(scores[best])] + [float(s) for k, s in enumerate(scores) if k != best]


def cross_validate(questions: list[dict], l2: float, folds: int, max_candidates: int, names: list[str]) -> list[dict]:
    """Held-out predictions: {exact_match, f1, scores} per question."""
    order = list(range(len(questions)))
    random.Random(0).shuffle(order)
    held_out_predictions = []
    for fold in range(folds):
        held_out = order[fold::folds]
        weights = fit([questions[i] for i in order if i not in set(held_out)], l2)
        for i in held_out:
            chosen, scores = choose(questions[i], weights, max_candidates, names)
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


def write_weights(path: Path, names: list[str], weights: torch.Tensor, temperature: float, provenance: dict) -> None:
    """The weights file selection.read_weights reads: weights by feature name, the temperature,
    and how they were fitted."""
    document = {"format": "nlpipe.SelectorWeights.v1",
                "weights": {name: round(float(w), 4) for name, w in zip(names, weights)},
                "temperature": temperature, "provenance": provenance}
    Path(path).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
