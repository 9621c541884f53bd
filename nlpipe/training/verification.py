"""The reader's verifier (llm.verifier), fitted as `nlpipe train`'s last stage.

Every question of the training files is read as the pipeline reads it (spaCy's parse, the
evidence ranking's best sentences, the verification prompt: components.recording.read_states);
the model's states are cached per user. One verifier is fitted for each of the reader's
cross-validation heads, on the articles that head saw, and kept in its folder: `nlpipe fit`
reads an article with the head that never saw it, and so gets the verifier's held-out opinion
too. Then one on everything.
"""

import bisect
import hashlib
import json
from pathlib import Path

import torch

from ..llm.cache import cache_root
from ..llm.reader import held_out_readers
from ..llm.verifier import L2, MAX_CONTEXT_TOKENS, SENTENCES, fit_verifier, save_verifier
from .examples import deal_folds

STATES_VERSION = 1  # of what read_states keeps of a row (llm.verifier.verification_row and _inputs)


def states_path(described: dict) -> Path:
    """Where read_states' result for `described` (data, model, pipeline, layers) is cached."""
    key = hashlib.sha256(json.dumps({**described, "sentences": SENTENCES, "max_context_tokens": MAX_CONTEXT_TOKENS,
                                     "version": STATES_VERSION}, sort_keys=True).encode()).hexdigest()[:24]
    return cache_root() / "features" / f"verifier-{key}.pt"


def auc(scores: list[float], positive: list[bool]) -> float | None:
    """The chance that a positive scores above a negative (ties half); None without both."""
    negatives = sorted(s for s, p in zip(scores, positive) if not p)
    positives = [s for s, p in zip(scores, positive) if p]
    if not negatives or not positives:
        return None
    above = sum(bisect.bisect_left(negatives, s) + 0.5 * (bisect.bisect_right(negatives, s)
                                                          - bisect.bisect_left(negatives, s)) for s in positives)
    return above / (len(positives) * len(negatives))


def fit_and_save(inputs: torch.Tensor, unanswerable: list[bool], articles: list[str], folder: Path,
                 layers: tuple[int, ...], hidden_size: int, provenance: dict,
                 folds: int = 5) -> tuple[list[dict], float | None]:
    """A verifier in each cross-validation head's folder (fitted on the articles it saw) and one
    in `folder` (on everything). Returns the held-out AUC per fold (of those heads' folds, or
    without heads of `folds` article folds) and over all held-out questions."""
    labels = torch.tensor(unanswerable, dtype=torch.float32)
    heads = held_out_readers(folder)
    splits = [(path, held) for path, held in heads] or [(None, set(held)) for held in deal_folds(articles, folds)]
    rows, pooled_scores, pooled_labels = [], [], []
    for path, held in splits:
        test = torch.tensor([a in held for a in articles])
        if test.all() or not test.any():
            continue
        verifier = fit_verifier(inputs[~test], labels[~test], layers, hidden_size)
        scored = verifier.no_answer(inputs[test]).tolist()
        held_labels = [bool(v) for v in labels[test].tolist()]
        score = auc(scored, held_labels)
        pooled_scores += scored
        pooled_labels += held_labels
        rows.append({"held": sorted(held), "answerable": held_labels.count(False),
                     "unanswerable": held_labels.count(True), "auc": _rounded(score)})
        if path is not None:
            save_verifier(verifier, path, {**provenance, "held": sorted(held), "held_out_auc": rows[-1]["auc"]})
    pooled = auc(pooled_scores, pooled_labels)
    save_verifier(fit_verifier(inputs, labels, layers, hidden_size), folder,
                  {**provenance, "l2": L2, "cross_validation": {"folds": rows, "pooled_auc": _rounded(pooled)}})
    return rows, pooled


def _rounded(score: float | None) -> float | None:
    return None if score is None else round(score, 4)

