"""Article-level cross-validation of the span selector on the two SQuAD parts in ../shared/data.

    python benchmarks/cross_article.py [--l2 0.01] [--write] [--cache FILE]

Fits on one article (University_of_Notre_Dame, the train part) and tests on the other
(Super_Bowl_50, the dev part), then the reverse, with production's choice replayed on recorded
candidates (nlpipe.components.recording / fitting: the code `nlpipe fit` runs). Each article's
questions come with as many unanswerable ones made from the same article
(squad.unanswerable_questions), so each test set is half answerable, like SQuAD 2.0.
Prints, per direction: answerable questions with every question answered (EM/F1), and SQuAD 2.0
HasAns / NoAns / overall with the fitted no-answer threshold. Covers the questions with
candidates (free-form why/how questions are answered by generation, which this does not run);
benchmarks/squad_quality.py measures whole pipelines.

--write fits on both articles and writes the shipped weights file. --cache keeps the model's
candidate scores between runs (keyed by prompt and candidate token ids, so a changed prompt
or candidate is scored afresh): feature work then costs seconds, not the model's minutes.
"""

import argparse
import pickle
import time
from pathlib import Path

from _common import REPO, SQUAD_DEV, qa_pipeline, require_squad

from nlpipe.components.fitting import FITTED_FEATURES as NAMES, cross_validate, fit, provenance, summarise, write_weights
from nlpipe.components.recording import qa_component, record
from nlpipe.components.selection import DEFAULT_WEIGHTS_FILE, FEATURES, WEIGHTS_DIR
from nlpipe.llm.engine import Request
from nlpipe.squad import read_squad, unanswerable_questions

SQUAD_TRAIN = REPO.parent / "shared" / "data" / "squad-train-v1.1-part.json"


def cached_ranking(llm, path: Path):
    """Wrap llm.rank_stream so that scores already in `path` are not computed again."""
    cache = pickle.loads(path.read_bytes()) if path.is_file() else {}
    rank_stream = llm.rank_stream

    def cached(requests):
        key = lambda r, c: (tuple(r.tokens), tuple(c))  # noqa: E731
        rows = [row for row, r in enumerate(requests) if any(key(r, c) not in cache for c in r.continuations)]
        missing = [Request(requests[row].tokens, requests[row].shared,
                           [c for c in requests[row].continuations if key(requests[row], c) not in cache])
                   for row in rows]
        failed = {}
        for k, scores in rank_stream(missing):
            if isinstance(scores, list):
                cache.update({key(missing[k], c): score for c, score in zip(missing[k].continuations, scores)})
            else:
                failed[rows[k]] = scores
        for row, r in enumerate(requests):
            yield row, failed.get(row) or [cache[key(r, c)] for c in r.continuations]

    llm.rank_stream = cached
    return lambda: path.write_bytes(pickle.dumps(cache))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--l2", type=float, default=0.01)
    parser.add_argument("--write", action="store_true", help="fit on both articles and write the shipped weights")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/nlpipe-score-cache.pkl"))
    parser.add_argument("--dev-every", type=int, default=1, help="only every Nth paragraph of the dev part")
    parser.add_argument("--unanswerable-every", type=int, default=1,
                        help="an unanswerable question for only every Nth answerable one")
    parser.add_argument("--shortlist", type=int, default=24, help="candidates per question the model scores")
    parser.add_argument("--shortlist-weights", default=DEFAULT_WEIGHTS_FILE,
                        help="the weights file whose features (all but the model's) pick the candidates to score")
    args = parser.parse_args()
    started = time.perf_counter()
    files = [require_squad(SQUAD_TRAIN), require_squad(SQUAD_DEV)]
    paragraphs = list(read_squad(files[0])) + list(read_squad(files[1]))[::args.dev_every]
    paragraphs += unanswerable_questions(paragraphs)[::args.unanswerable_every]
    nlp = qa_pipeline({"components.llama_qa.selector.weights_file": args.shortlist_weights})
    save = cached_ranking(nlp.get_pipe("llama_qa").llm, args.cache)
    try:
        examples = record(nlp, paragraphs, shortlist=args.shortlist,
                          on_questions=lambda n: print(f"\r{n} questions", end="", flush=True))
    finally:
        save()
    print(f"\n{len(examples)} questions with candidates ({sum(not e.answerable for e in examples)} unanswerable), "
          f"{time.perf_counter() - started:.0f} s")
    with open(args.cache.with_suffix(".examples.pkl"), "wb") as out:  # for feature work without the model
        pickle.dump(examples, out)
    max_candidates = qa_component(nlp).selector.max_candidates
    held_out = cross_validate(examples, NAMES, args.l2, max_candidates)
    rows = summarise(held_out)
    for row in rows:
        print(f"test {row['fold']:<26} answerable {row['answerable']:4d}: EM {row['em']:.1f} F1 {row['f1']:.1f} | "
              f"SQuAD 2.0 (threshold {row['threshold']}): HasAns EM {row['has_em']:.1f} F1 {row['has_f1']:.1f}, "
              f"NoAns {row['no_f1']:.1f} ({row['unanswerable']}), overall EM {row['all_em']:.1f} F1 {row['all_f1']:.1f}")
    by_type = {}
    for predictions, _ in held_out.values():
        for p in predictions:
            if p.example.answerable:
                by_type.setdefault(p.example.qtype, []).append(p.f1)
    print("held-out F1 by question type (both directions): " + ", ".join(
        f"{qtype} {100 * sum(f1s) / len(f1s):.1f} ({len(f1s)})"
        for qtype, f1s in sorted(by_type.items(), key=lambda item: -len(item[1]))))
    if args.write:
        fitted = fit(examples, NAMES, args.l2, max_candidates)
        path = WEIGHTS_DIR / DEFAULT_WEIGHTS_FILE
        write_weights(path, fitted, list(FEATURES), provenance(
            files, examples, rows, args.l2, "smollm2-135m (SmolLM2-135M-Instruct, float32)", made_unanswerable=True))
        print(f"wrote {path}: threshold {fitted.threshold}, temperature {fitted.temperature}")


if __name__ == "__main__":
    main()
