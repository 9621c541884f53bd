"""Fit the span selector's feature weights on a SQuAD-format file: how the defaults were made.

    python benchmarks/fit_selector.py [FILE] [--l2 0.01] [--folds 5] [--output weights.json]

Runs pipelines/qa.cfg with EVERY candidate scored by the model (no shortlist) and records each
candidate's features (selection.FEATURES) and its F1 against the question's references. The
weights are then fitted by a softmax over each question's candidates whose target is its best
candidates (L2-regularised). Prints the cross-validated exact match / F1 of the candidate
questions (with the production shortlist: the `max_candidates` best by the features other
than the likelihood, then the best of those) and the softmax temperature that makes the held-out
confidence match how often the answer is exactly right (with the expected calibration error
before and after), and writes the weights file with its provenance (default: the shipped one;
`[components.llama_qa.selector] weights_file` takes another).
FILE defaults to the SQuAD *train* part in ../shared/data: the defaults were fitted there,
never on the dev part that benchmarks/squad_quality.py reports.
"""

import argparse
import datetime
import hashlib
import time
from pathlib import Path

import torch
from _common import REPO, qa_pipeline, require_squad

from nlpipe.components.fitting import cross_validate, fit, fit_temperature, with_confidence, write_weights
from nlpipe.components.selection import (FEATURES, REPLY_FEATURES, WEIGHTS_DIR, WEIGHTS_V1, SpanSelector,
                                         candidate_features)
from nlpipe.evaluation import calibration, f1_score, read_squad

SQUAD_TRAIN = REPO.parent / "shared" / "data" / "squad-train-v1.1-part.json"
NAMES = [name for name in FEATURES if name not in REPLY_FEATURES]  # scoring alone never generates


class RecordingSelector(SpanSelector):
    """Keeps every candidate (the model scores them all) and records their features."""

    def __init__(self, selector: SpanSelector):
        super().__init__(selector.max_sentences, 10**9, selector.weights, selector.temperature)
        self.records = {}  # question text -> (candidate texts, feature rows), for the Doc in hand

    def choose(self, question, candidates, ranked, scores, reply_offsets=None, core=""):
        if candidates:
            rows = candidate_features(question, candidates, ranked[:self.max_sentences], scores, reply_offsets, core)
            self.records[question.text] = ([span.text for span in candidates], rows)
        return super().choose(question, candidates, ranked, scores, reply_offsets, core)


def record(path: Path) -> list[dict]:
    """One {id, features [candidates × NAMES], f1 [candidates], texts, references} per SQuAD
    question, keyed by its id: question texts repeat and carry stray whitespace."""
    nlp = qa_pipeline()
    qa = nlp.get_pipe("llama_qa")
    qa.selector = recorder = RecordingSelector(qa.selector)
    questions = []
    for paragraph in read_squad(path):
        recorder.records = {}
        doc = nlp.make_doc(paragraph.context)
        doc._.questions = [q for _, q, _ in paragraph.questions]
        nlp(doc)
        for qid, question, references in paragraph.questions:
            if question.strip() not in recorder.records:
                continue  # no candidates (a free-form question)
            texts, rows = recorder.records[question.strip()]
            questions.append({
                "id": qid, "texts": texts, "references": references,
                "features": torch.tensor([[row[name] for name in NAMES] for row in rows]),
                "f1": torch.tensor([max(f1_score(text, ref) for ref in references) for text in texts])})
    return questions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", type=Path, default=SQUAD_TRAIN)
    parser.add_argument("--l2", type=float, default=0.01, help="L2 penalty on the weights")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--output", type=Path, default=WEIGHTS_DIR / WEIGHTS_V1,
                        help="the weights file to write (default: the one nlpipe ships)")
    args = parser.parse_args()
    started = time.perf_counter()
    path = require_squad(args.file)
    questions = record(path)
    max_candidates = SpanSelector().max_candidates
    held_out = cross_validate(questions, args.l2, args.folds, max_candidates, NAMES)
    em, f1 = (100 * sum(p[key] for p in held_out) / len(held_out) for key in ("exact_match", "f1"))
    temperature = fit_temperature(held_out)
    weights = fit(questions, args.l2)
    print(f"{len(questions)} questions with candidates, {time.perf_counter() - started:.0f} s")
    print(f"{args.folds}-fold cross-validated on them: exact match {em:.1f}, F1 {f1:.1f}; expected calibration "
          f"error {calibration(with_confidence(held_out, 1.0))[1]:.3f} at temperature 1, "
          f"{calibration(with_confidence(held_out, temperature))[1]:.3f} at {temperature:.2f}")
    provenance = {
        "fitted_by": "benchmarks/fit_selector.py (nlpipe.components.fitting)",
        "fitted_on": datetime.date.today().isoformat(),
        "data": [{"file": path.name, "questions": len(questions),
                  "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}],
        "model": "smollm2-135m (SmolLM2-135M-Instruct, float32)",
        "objective": "softmax over each question's candidates, target its best-F1 candidates",
        "l2": args.l2, "cross_validation": {"folds": args.folds, "exact_match": round(em, 1), "f1": round(f1, 1)},
        "temperature_fit": "log-loss of held-out exact matches on a grid 0.20-3.00"}
    write_weights(args.output, NAMES + list(REPLY_FEATURES), torch.cat([weights, torch.zeros(len(REPLY_FEATURES))]),
                  temperature, provenance)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
