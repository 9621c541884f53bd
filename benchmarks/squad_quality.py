"""QA quality on the shared SQuAD part: grounded vs generative mode, measured in one run.

    python benchmarks/squad_quality.py [--limit N] [--markdown]

Prints mode × exact match × F1 × questions/s (official SQuAD v1.1 normalisation), checks
that every grounded answer with a start_char is exactly text[start_char:end_char], and shows
how well the grounded answers' confidence predicts an exact match.
"""

import argparse
import json
import time

from _common import qa_pipeline, require_squad

from nlpipe.evaluation import calibration, evaluate_squad
from nlpipe.squad import read_squad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, help="only the first N questions")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown (for README.md)")
    parser.add_argument("--predictions", help="write grounded-mode predictions as JSONL here")
    args = parser.parse_args()
    squad = require_squad()
    contexts = {qid: p.context for p in read_squad(squad, args.limit) for qid, _, _ in p.questions}
    nlp = qa_pipeline()
    qa = nlp.get_pipe("llama_qa")
    rows = []
    for mode in ("generative", "grounded"):
        qa.mode = mode
        started = time.perf_counter()
        result = evaluate_squad(nlp, squad, args.limit)
        wall = time.perf_counter() - started
        bad_offsets = [p for p in result.predictions if p["start_char"] is not None
                       and contexts[p["id"]][p["start_char"]:p["start_char"] + len(p["prediction"])] != p["prediction"]]
        rows.append((mode, result, wall, len(bad_offsets)))
        if mode == "grounded" and args.predictions:
            with open(args.predictions, "w", encoding="utf-8") as out:
                for prediction in result.predictions:
                    out.write(json.dumps(prediction, ensure_ascii=False) + "\n")
    print(f"SQuAD v1.1 dev part ({rows[0][1].questions} questions), SmolLM2-135M-Instruct, "
          f"{qa.llm.device} {str(qa.llm.model.dtype).replace('torch.', '')}")
    header = ("mode", "exact match", "F1", "answers that are spans", "questions/s", "offset errors")
    lines = [[mode, f"{r.exact_match:.1f}", f"{r.f1:.1f}", f"{r.spans}/{r.questions}",
              f"{r.questions / wall:.2f}", str(bad)] for mode, r, wall, bad in rows]
    if args.markdown:
        print("| " + " | ".join(header) + " |\n|" + " --- |" * len(header))
        for line in lines:
            print("| " + " | ".join(line) + " |")
    else:
        print(("{:<12}" * len(header)).format(*[h[:11] for h in header]))
        for line in lines:
            print(("{:<12}" * len(line)).format(*line))
    base, grounded = rows[0][1], rows[1][1]
    print(f"grounded vs generative: EM {grounded.exact_match - base.exact_match:+.1f}, F1 {grounded.f1 - base.f1:+.1f}")
    bins, error = calibration(grounded.predictions)
    print(f"grounded confidence: expected calibration error {error:.3f} (against exact match)")
    for b in bins:
        print(f"  confidence {b.low:.1f}-{b.high:.1f}: {b.count:4d} answers, mean confidence {b.predicted:.2f}, "
              f"exactly right {b.observed:.2f}")


if __name__ == "__main__":
    main()
