"""The reader's verifier (llm.verifier), fitted as `nlpipe train`'s last stage.

Every question of the training files is read as the pipeline reads it (spaCy's parse, the
evidence ranking's best sentences, the verification prompt: components.recording.read_states);
the model's states are cached per user. One verifier is fitted for each article fold, without
its articles, and kept in folds/verifier-K: `nlpipe fit` reads an article with a verifier
that never saw it (as with a reader head that never saw it), and so learns how far to trust
the verifier on new text. Then one on everything.
"""

import hashlib
import json
import shutil
from pathlib import Path

import torch

from ..llm.cache import cache_root
from ..llm.reader import FOLDS_DIR
from ..llm.verifier import (FOLD_PREFIX, L2, MAX_CONTEXT_TOKENS, SENTENCES, VERIFIER_FILE, fit_verifier,
                             save_verifier)
from ..metrics import auc
from .examples import deal_folds

STATES_VERSION = 1  # of what read_states keeps of a row (llm.verifier.verification_row and _inputs)


def states_path(described: dict) -> Path:
    """Where read_states' result for `described` (data, model, pipeline, layers) is cached."""
    key = hashlib.sha256(json.dumps({**described, "sentences": SENTENCES, "max_context_tokens": MAX_CONTEXT_TOKENS,
                                     "version": STATES_VERSION}, sort_keys=True).encode()).hexdigest()[:24]
    return cache_root() / "features" / f"verifier-{key}.pt"


def fit_and_save(inputs: torch.Tensor, unanswerable: list[bool], articles: list[str], folder: Path,
                 layers: tuple[int, ...], hidden_size: int, provenance: dict,
                 folds: int = 5) -> tuple[list[dict], float | None]:
    """A verifier for each of `folds` article folds (folds/verifier-K, fitted without that fold's
    articles) and one in `folder` (on everything). Returns the held-out AUC per fold and over
    all held-out questions. The folds are the verifier's own, not the reader heads': fitted on
    half the pool's articles, as a head is, it tells their unanswerable questions apart at AUC
    0.72 held out, on four fifths 0.74, and `nlpipe fit` weighs it by what it shows there (on
    one recording, the no-answer model's held-out AUC 0.744 against 0.755, SQuAD 2.0 55.8
    against 56.6)."""
    labels = torch.tensor(unanswerable, dtype=torch.float32)
    rows, fitted, pooled_scores, pooled_labels = [], [], [], []
    for held in map(set, deal_folds(articles, folds)):
        test = torch.tensor([a in held for a in articles])
        if test.all() or not test.any():
            continue
        verifier = fit_verifier(inputs[~test], labels[~test], layers, hidden_size)
        scored = verifier.no_answer(inputs[test]).tolist()
        held_labels = [bool(v) for v in labels[test].tolist()]
        pooled_scores += scored
        pooled_labels += held_labels
        rows.append({"held": sorted(held), "answerable": held_labels.count(False),
                     "unanswerable": held_labels.count(True), "auc": _rounded(auc(scored, held_labels))})
        fitted.append(verifier)
    _remove_fold_verifiers(Path(folder))  # all fitted first: the old ones go only when the new are ready
    for number, (verifier, row) in enumerate(zip(fitted, rows), start=1):
        save_verifier(verifier, Path(folder, FOLDS_DIR, f"{FOLD_PREFIX}{number}"),
                      {**provenance, "held": row["held"], "held_out_auc": row["auc"]})
    pooled = auc(pooled_scores, pooled_labels)
    save_verifier(fit_verifier(inputs, labels, layers, hidden_size), folder,
                  {**provenance, "l2": L2, "cross_validation": {"folds": rows, "pooled_auc": _rounded(pooled)}})
    return rows, pooled


def _remove_fold_verifiers(folder: Path) -> None:
    """An earlier fit's fold verifiers (another number of folds would leave some behind), and
    those an earlier release kept in the reader heads' folders (fitted on half the articles)."""
    for stale in Path(folder, FOLDS_DIR).glob(f"{FOLD_PREFIX}*"):
        shutil.rmtree(stale)
    for stale in Path(folder, FOLDS_DIR).glob(f"fold-*/{VERIFIER_FILE}"):
        stale.unlink()


def _rounded(score: float | None) -> float | None:
    return None if score is None else round(score, 4)
