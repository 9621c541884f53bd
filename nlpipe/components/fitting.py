"""Fit the span selector to labelled examples (recording.Example): its feature weights and
lexicon, the confidence's softmax temperature, and the answerability model with its threshold.

The weights and the lexicon (a weight per lexical feature, lexical.py) are those of a softmax
over each answerable question's candidates whose target is its best candidates; the
answerability model is a logistic regression on the question-level inputs of
selection.answerability_features, with the two classes weighted equally; the
threshold is the one that maximises SQuAD 2.0 F1 (an abstention is right exactly when the
question has no answer). All are trained by mini-batch gradient descent (Adam, L2), seeded.
Every choice is replayed as production makes it (fitting.ranking mirrors SpanSelector).
"""

import dataclasses
import datetime
import errno
import hashlib
import json
import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..about import __version__
from ..errors import Errors, InputError
from ..training.examples import deal_folds
from .lexical import lexicon_score
from .recording import Example
from .selection import (ANSWERABILITY_FEATURES, FEATURES, MODEL_FEATURES, READER_SPAN_FEATURES, REPLY_FEATURES,
                        answerability_features, answerable_probability, best_first, shortlist, softmax_share,
                        weighs_reader_spans)

EPOCHS = 40
BATCH = 32
# What a fit learns: every feature but the reply's (scoring alone never generates a reply).
FITTED_FEATURES = [name for name in FEATURES if name not in REPLY_FEATURES]
# F1 points the answerable questions may lose to abstentions when the threshold is fitted. Held
# out (5 article folds of the pool recording), 10 points would raise SQuAD 2.0 from 54.6 to 55.2
# at the pool's 2:1 mix and from 47.4 to 51.7 half and half, but refuse a quarter of Notre Dame's
# answerable questions (66 of 269, F1 64 → 56): the failure users reported first.
MAX_HAS_ANSWER_LOSS = 0.04
# A lexical feature gets a weight when this many answerable questions have it: rarer ones
# would be fitted to a question or two.
MIN_QUESTIONS = 3
LEXICAL_L2 = 1e-4  # per weight: the lexicon has thousands, each seen in few questions
# Adam steps every weight by about the learning rate whatever its gradient; a lexical weight
# moves a tenth as far (it is this times its parameter): each is seen in few questions, and at
# full steps they overfit them (held-out F1 50.8 against 56.8 at a tenth, 5 article folds).
LEXICAL_STEP = 0.1
ANSWERABILITY_STEPS = 300  # full-batch Adam steps: converged on the pool recording
ANSWERABILITY_L2 = 5e-4  # per standardised input


@dataclass
class Fitted:
    names: list[str]  # the selector features fitted, in the weights' order
    weights: torch.Tensor
    temperature: float = 1.0
    answerability: dict[str, float] = field(default_factory=dict)
    threshold: float | None = None
    lexicon: dict[str, float] = field(default_factory=dict)  # lexical feature → weight


@dataclass
class Prediction:
    """The production choice for one example: the chosen candidate, its confidence, and the
    answerability model's chance that there is an answer at all."""

    example: Example
    chosen: int
    scores: list[float]  # the shortlist's combined scores, the chosen one first
    inputs: dict  # the answerability model's inputs
    answerable: float | None = None

    def confidence(self, temperature: float) -> float:
        return softmax_share(self.scores, 0, temperature)

    @property
    def exact_match(self) -> float:
        return self.example.exact[self.chosen]

    @property
    def f1(self) -> float:
        return self.example.f1[self.chosen]

    def squad2(self, threshold: float | None) -> tuple[float, float]:
        """(exact match, F1) as SQuAD 2.0 counts them with this abstention threshold."""
        if threshold is not None and self.answerable is not None and self.answerable < threshold:
            return (0.0, 0.0) if self.example.answerable else (1.0, 1.0)
        return (self.exact_match, self.f1) if self.example.answerable else (0.0, 0.0)


def feature_matrix(example: Example, names: list[str]) -> torch.Tensor:
    return torch.tensor([[row[name] for name in names] for row in example.rows], dtype=torch.float32)


def _adam(parameters: torch.Tensor, batches: Callable[[int], list], loss_of, l2: float | torch.Tensor, lr: float = 0.05,
          epochs: int = EPOCHS, on_epoch: Callable[[int], None] = lambda e: None) -> torch.Tensor:
    parameters.requires_grad_(True)
    optimizer = torch.optim.Adam([parameters], lr=lr)
    for epoch in range(epochs):
        for batch in batches(epoch):
            optimizer.zero_grad()
            loss = loss_of(batch) + (l2 * parameters ** 2).sum()
            loss.backward()
            optimizer.step()
        on_epoch(epoch + 1)
    return parameters.detach()


def _minibatches(items: list, seed: int) -> Callable[[int], list]:
    def batches(epoch: int) -> list:
        order = list(items)
        random.Random(seed * 1000 + epoch).shuffle(order)
        return [order[i:i + BATCH] for i in range(0, len(order), BATCH)]
    return batches


def fit_weights(examples: list[Example], names: list[str], l2: float, seed: int = 0,
                on_epoch: Callable[[int], None] = lambda e: None) -> tuple[torch.Tensor, dict[str, float]]:
    """Feature weights and the lexicon: softmax over each answerable question's candidates,
    target its best ones."""
    take = any(name in names for name in READER_SPAN_FEATURES)
    usable = [e for e in (offered(e, take) for e in examples) if e.answerable and e.f1 and max(e.f1) > 0]
    vocabulary = lexical_vocabulary(usable)
    widest = max(len(e.rows) for e in usable)
    features = torch.zeros(len(usable), widest, len(names))
    lexical = torch.full((len(usable), widest, max(1, max_lexical(usable))), len(vocabulary), dtype=torch.long)
    target = torch.zeros(len(usable), widest)
    present = torch.zeros(len(usable), widest, dtype=torch.bool)
    for q, example in enumerate(usable):  # padded to the widest question; `present` masks the padding
        f1 = torch.tensor(example.f1)
        features[q, :len(f1)] = feature_matrix(example, names)
        for k, strings in enumerate(example.lexical):
            ids = [vocabulary[s] for s in strings if s in vocabulary]
            lexical[q, k, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        target[q, :len(f1)] = (f1 == f1.max()).float() / (f1 == f1.max()).sum()
        present[q, :len(f1)] = True

    def loss_of(batch):
        rows = torch.tensor(batch)
        weights = parameters[:len(names)]
        lexicon = torch.cat([parameters[len(names):] * LEXICAL_STEP, torch.zeros(1)])  # the last: padding, weight 0
        logits = features[rows] @ weights + lexicon[lexical[rows]].sum(-1)
        logits = logits.masked_fill(~present[rows], float("-inf"))
        log_shares = torch.where(present[rows], torch.log_softmax(logits, 1), 0.0)
        return -(target[rows] * log_shares).sum(1).mean()

    parameters = torch.zeros(len(names) + len(vocabulary))
    l2s = torch.cat([torch.full((len(names),), l2), torch.full((len(vocabulary),), LEXICAL_L2)])
    parameters = _adam(parameters, _minibatches(list(range(len(usable))), seed), loss_of, l2s, on_epoch=on_epoch)
    lexicon = {feature: round(float(parameters[len(names) + k] * LEXICAL_STEP), 4) for feature, k in vocabulary.items()}
    return parameters[:len(names)], {feature: w for feature, w in sorted(lexicon.items()) if w}


def lexical_vocabulary(examples: list[Example]) -> dict[str, int]:
    """The lexical features of at least MIN_QUESTIONS examples, numbered."""
    counts: dict[str, int] = {}
    for example in examples:
        for feature in {s for strings in example.lexical for s in strings}:
            counts[feature] = counts.get(feature, 0) + 1
    return {feature: k for k, feature in enumerate(sorted(f for f, n in counts.items() if n >= MIN_QUESTIONS))}


def max_lexical(examples: list[Example]) -> int:
    return max((len(strings) for e in examples for strings in e.lexical), default=0)


def lexical_scores(example: Example, lexicon: dict[str, float]) -> torch.Tensor:
    """Each candidate's sum of lexicon weights (SpanSelector.combine's second half)."""
    if not lexicon or not example.lexical:
        return torch.zeros(len(example.rows))
    return torch.tensor([lexicon_score(lexicon, strings) for strings in example.lexical])


def offered_rows(example: Example, reader_spans: bool) -> list[int]:
    """The candidates production would have: the reader's best spans that no spaCy candidate
    is only if the weights weigh them (selection.weighs_reader_spans)."""
    origins = example.reader_only or [False] * len(example.rows)
    return [k for k, only in enumerate(origins) if reader_spans or not only]


def offered(example: Example, reader_spans: bool) -> Example:
    """The example with only its offered_rows."""
    kept = offered_rows(example, reader_spans)
    if len(kept) == len(example.rows):
        return example

    def pick(values: list) -> list:
        return [values[k] for k in kept] if values else values
    return dataclasses.replace(example, texts=pick(example.texts), rows=pick(example.rows), f1=pick(example.f1),
                               exact=pick(example.exact), lexical=pick(example.lexical),
                               reader_only=pick(example.reader_only))


def ranking(example: Example, weights: torch.Tensor, names: list[str], max_candidates: int,
            lexicon: dict[str, float] | None = None) -> tuple[int, list[float]]:
    """As SpanSelector.candidates + choose: shortlist by every feature but the likelihood, then
    the best. Returns the chosen candidate and the shortlist's combined scores, the chosen first."""
    features = feature_matrix(example, names)
    lexical = lexical_scores(example, lexicon or {})
    prior = features.clone()
    prior[:, [k for k, name in enumerate(names) if name in MODEL_FEATURES]] = 0
    rows = offered_rows(example, weighs_reader_spans(dict(zip(names, weights.tolist()))))
    prior_scores = (prior @ weights + lexical).tolist()
    listed = [rows[k] for k in shortlist([prior_scores[k] for k in rows], max_candidates)]
    combined = (features[listed] @ weights + lexical[listed]).tolist()
    best = best_first(combined)[0]
    return listed[best], [combined[best]] + [s for k, s in enumerate(combined) if k != best]


def predict(examples: list[Example], fitted: Fitted, max_candidates: int) -> list[Prediction]:
    predictions = []
    for example in examples:
        chosen, scores = ranking(example, fitted.weights, fitted.names, max_candidates, fitted.lexicon)
        share = softmax_share(scores, 0, fitted.temperature)
        inputs = answerability_features(example.rows[chosen], scores, share, example.context)
        predictions.append(Prediction(example, chosen, scores, inputs))
    if fitted.answerability:
        rate_answerability(predictions, fitted.answerability)
    return predictions


def rate_answerability(predictions: list[Prediction], model: dict[str, float]) -> None:
    """Each prediction's chance of being answerable, by the answerability `model`."""
    for prediction in predictions:
        prediction.answerable = answerable_probability(model, prediction.inputs)


def fit_temperature(predictions: list[Prediction]) -> float:
    """The temperature whose confidences best predict exact matches of answerable questions
    (log-loss, on a grid)."""
    rated = [p for p in predictions if p.example.answerable]

    def log_loss(temperature):
        eps = 1e-6
        return -sum(math.log(max(eps, c if p.exact_match else 1 - c))
                    for p in rated for c in [p.confidence(temperature)])
    return min((t / 100 for t in range(20, 301, 2)), key=log_loss)


def fit_answerability(predictions: list[Prediction]) -> dict[str, float]:
    """Logistic regression: is there an answer? Each class weighs half, whatever their counts.
    Fitted on standardised inputs, full batch, to convergence, and returned in the inputs' own
    units: the inputs range from shares (0-1) to summed scores (tens), and mini-batch steps of
    one size for all of them left the model underfitted (held-out AUC 0.78 against 0.83, 5
    article folds of the pool recording)."""
    names = [name for name in ANSWERABILITY_FEATURES if name != "bias"]
    inputs = torch.tensor([[p.inputs.get(n, 0.0) for n in names] for p in predictions], dtype=torch.float32)
    labels = torch.tensor([float(p.example.answerable) for p in predictions])
    positives = max(1.0, float(labels.sum()))
    negatives = max(1.0, len(labels) - float(labels.sum()))
    balance = torch.where(labels > 0, 0.5 / positives, 0.5 / negatives) * len(labels)
    mean, scale = inputs.mean(0), inputs.std(0).nan_to_num(0.0).clamp_min(1e-6)
    standardised = (inputs - mean) / scale  # a constant input is all zeros: its weight stays 0
    weights, bias = torch.zeros(len(names), requires_grad=True), torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.Adam([weights, bias], lr=0.01)
    for _ in range(ANSWERABILITY_STEPS):
        optimizer.zero_grad()
        logits = standardised @ weights + bias
        losses = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="none")
        ((losses * balance).mean() + ANSWERABILITY_L2 * (weights ** 2).sum()).backward()
        optimizer.step()
    raw = weights.detach() / scale
    intercept = float(bias.detach() - (raw * mean).sum())
    return {"bias": round(intercept, 6), **{name: round(float(w), 6) for name, w in zip(names, raw)}}


def fit_threshold(predictions: list[Prediction], max_loss: float = MAX_HAS_ANSWER_LOSS) -> float:
    """The abstention threshold with the best SQuAD 2.0 F1 (each class weighing half) among those
    that cost the answerable questions at most `max_loss` F1: an over-eager threshold fitted on
    one text abstains far more on another, and a wrong "no answer" to an answerable question
    costs a user more than a wrong answer to an unanswerable one."""
    answerable = [p for p in predictions if p.example.answerable]
    unanswerable = [p for p in predictions if not p.example.answerable]
    answered_f1 = sum(p.f1 for p in answerable) / max(1, len(answerable))

    def mean_f1(group, threshold):
        return sum(p.squad2(threshold)[1] for p in group) / max(1, len(group))
    allowed = [t / 100 for t in range(0, 100) if mean_f1(answerable, t / 100) >= answered_f1 - max_loss]
    return max(allowed, key=lambda t: (mean_f1(answerable, t) + mean_f1(unanswerable, t), -t))


def at_the_data_odds(model: dict[str, float], threshold: float,
                     examples: list[Example]) -> tuple[dict[str, float], float]:
    """A class-balanced no-answer model, and its threshold, with the bias moved by the examples'
    own odds of an answer. The balanced fit lets the rarer kind shape the weights as much as the
    other, but its chances are those of a half-and-half mix: on the pool recording, held out by
    article, they put P(no answer) 0.14 too high on average (expected calibration error 0.136 at
    the pool's mix; 0.019 so moved). The threshold moves with it, so every decision is the one
    the balanced model and its threshold make."""
    answerable = sum(e.answerable for e in examples)
    shift = math.log(answerable / (len(examples) - answerable))
    moved = 0.0 if threshold <= 0 else 1.0 / (1.0 + math.exp(-(math.log(threshold / (1 - threshold)) + shift)))
    return {**model, "bias": round(model["bias"] + shift, 6)}, round(moved, 6)


def fit(examples: list[Example], names: list[str], l2: float, max_candidates: int, seed: int = 0,
        on_epoch: Callable[[int], None] = lambda e: None) -> Fitted:
    """Weights, temperature, and (when there are unanswerable examples) the answerability model
    and its threshold."""
    weights, lexicon = fit_weights(examples, names, l2, seed, on_epoch)
    fitted = Fitted(names, weights, lexicon=lexicon)
    predictions = predict(examples, fitted, max_candidates)
    fitted.temperature = fit_temperature(predictions)
    if any(not e.answerable for e in examples) and any(e.answerable for e in examples):
        # The no-answer model's inputs hold the confidence, so they follow the temperature.
        predictions = predict(examples, fitted, max_candidates)
        balanced = fit_answerability(predictions)
        rate_answerability(predictions, balanced)
        fitted.answerability, fitted.threshold = at_the_data_odds(balanced, fit_threshold(predictions), examples)
    return fitted


def folds_of(examples: list[Example], folds: int = 5) -> list[tuple[str, list[int]]]:
    """Held-out folds: of whole articles when there are several (text of an article never
    helps to fit its own test; dealt as nlpipe train deals them), else `folds` random ones."""
    articles = sorted({e.article for e in examples})
    if len(articles) > 1:
        dealt = deal_folds([e.article for e in examples], folds)
        return [(", ".join(sorted(held)) if len(held) == 1 else f"fold {k + 1} ({len(held)} articles)",
                 [i for i, e in enumerate(examples) if e.article in set(held)]) for k, held in enumerate(dealt)]
    order = list(range(len(examples)))
    random.Random(0).shuffle(order)
    return [(f"fold {k + 1}", sorted(order[k::folds])) for k in range(folds)]


def cross_validate(examples: list[Example], names: list[str], l2: float, max_candidates: int,
                   folds: int = 5) -> dict[str, tuple[list[Prediction], float | None]]:
    """Held-out predictions per fold (see folds_of), each fold predicted by a fit on the others."""
    held_out = {}
    for name, rows in folds_of(examples, folds):
        kept = set(rows)
        fitted = fit([e for i, e in enumerate(examples) if i not in kept], names, l2, max_candidates)
        held_out[name] = (predict([examples[i] for i in rows], fitted, max_candidates), fitted.threshold)
    return held_out


def check_writable(path: Path) -> None:
    """InputError E023 unless the weights file `path` can be written: checked before the
    recording (an hour on the pool), which a failure at its end would throw away."""
    staging = _staging(path)
    try:
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, "it is a folder")
        staging.touch()
        staging.unlink()
    except OSError as err:
        raise InputError(Errors.E023.format(path=path, reason=err.strerror or err)) from None


def _staging(path: Path) -> Path:
    return path.with_name(f".{path.name}.writing")


def write_weights(path: Path, fitted: Fitted, all_names: list[str], provenance: dict) -> None:
    """The weights file selection.read_weights reads: weights by feature name (0 for those not
    fitted), the lexicon, the temperature, the answerability model, and how they were fitted.
    Written beside `path`, then moved into place: an interrupted write leaves the old file."""
    weights = dict(zip(fitted.names, fitted.weights.tolist()))
    document = {"format": "nlpipe.SelectorWeights.v3",
                "weights": {name: round(weights.get(name, 0.0), 4) for name in all_names},
                "lexicon": fitted.lexicon,
                "temperature": fitted.temperature,
                "answerability": {"weights": fitted.answerability, "threshold": fitted.threshold},
                "provenance": provenance}
    staging = _staging(Path(path))
    staging.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    os.replace(staging, path)


def summarise(held_out: dict[str, tuple[list[Prediction], float | None]]) -> list[dict]:
    """Per held-out fold: answerable questions with every question answered, and SQuAD 2.0
    (answerable + unanswerable) with the fold's fitted threshold; percentages."""
    rows = []
    for name, (predictions, threshold) in held_out.items():
        answerable = [p for p in predictions if p.example.answerable]
        unanswerable = [p for p in predictions if not p.example.answerable]

        def mean(values):
            values = list(values)
            return 100 * sum(values) / len(values) if values else 0.0
        rows.append({
            "fold": name, "answerable": len(answerable), "unanswerable": len(unanswerable),
            "threshold": threshold,
            "em": mean(p.exact_match for p in answerable), "f1": mean(p.f1 for p in answerable),
            "has_em": mean(p.squad2(threshold)[0] for p in answerable),
            "has_f1": mean(p.squad2(threshold)[1] for p in answerable),
            "no_f1": mean(p.squad2(threshold)[1] for p in unanswerable),
            "all_em": mean(p.squad2(threshold)[0] for p in predictions),
            "all_f1": mean(p.squad2(threshold)[1] for p in predictions)})
    return [{k: round(v, 1) if isinstance(v, float) else v for k, v in row.items()} for row in rows]


def provenance(files: list[Path], examples: list[Example], cross_validation: list[dict], l2: float,
               model: str, made_unanswerable: bool, reader: str | None = None, every: int = 1) -> dict:
    """How a weights file was fitted: enough to refit it, and to know what its figures mean."""
    return {
        "fitted_by": f"nlpipe {__version__} (nlpipe fit; nlpipe.components.fitting)",
        "fitted_on": datetime.date.today().isoformat(),
        "data": [{"file": Path(f).name, "sha256": hashlib.sha256(Path(f).read_bytes()).hexdigest()} for f in files],
        "examples": {"answerable": sum(e.answerable for e in examples),
                     "unanswerable": sum(not e.answerable for e in examples),
                     "articles": sorted({e.article for e in examples})},
        "unanswerable_questions": ("made from the data: one per answerable question (nlpipe.evaluation."
                                   "unanswerable_questions)") if made_unanswerable else "the data's own",
        "model": model, "reader": reader, "every_nth_paragraph": every, "l2": l2,
        "objective": "softmax over each answerable question's candidates, target its best-F1 candidates; "
                     f"lexicon: a weight per lexical feature of at least {MIN_QUESTIONS} answerable questions "
                     f"(L2 {LEXICAL_L2}); "
                     "answerability: class-balanced logistic regression; threshold: best balanced SQuAD 2.0 F1 "
                     f"costing answerable questions at most {100 * MAX_HAS_ANSWER_LOSS:g} F1 points; both "
                     "then moved by the data's odds of an answer (calibrated at its mix, the same decisions)",
        "cross_validation": cross_validation}
