"""Annotation overhead: pipelines/annotate.cfg through nlpipe against bare spaCy, same texts.

    python benchmarks/annotate_speed.py [--repeat 3]

Both annotate the SQuAD part's paragraphs with en_core_web_sm; nlpipe also writes JSONL
records (with token annotations). Prints words/s for each and the ratio (target >= 0.95).
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import spacy
from _common import REPO, require_squad

from nlpipe.components.spacy_models import resolve_spacy_model
from nlpipe.config import JobSettings, build_pipeline, load_config
from nlpipe.runner import run
from nlpipe.squad import read_squad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="passes over the paragraphs (best one counts)")
    args = parser.parse_args()
    texts = [p.context for p in read_squad(require_squad())]
    bare = spacy.load(resolve_spacy_model("en_core_web_sm"))
    ours = build_pipeline(load_config(REPO / "pipelines" / "annotate.cfg"))
    words = sum(len(doc) for doc in bare.pipe(texts))  # also warms both up
    list(ours.pipe(texts[:5]))
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "docs.jsonl"
        source.write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(texts)))
        bare_s = ours_s = float("inf")
        for _ in range(args.repeat):  # alternate, so that machine noise hits both alike
            started = time.perf_counter()
            for doc in bare.pipe(texts, batch_size=64):
                pass
            bare_s = min(bare_s, time.perf_counter() - started)
            settings = JobSettings(input=str(source), output=str(Path(tmp) / "out.jsonl"), batch_size=64,
                                   annotations=True)
            started = time.perf_counter()
            run(ours, settings, overwrite=True)
            ours_s = min(ours_s, time.perf_counter() - started)
    print(f"{len(texts)} paragraphs, {words} words, best of {args.repeat}")
    print(f"bare spacy.load(...).pipe  {words / bare_s:9.0f} words/s")
    print(f"nlpipe annotate.cfg        {words / ours_s:9.0f} words/s  (reading, annotating, writing JSONL)")
    print(f"ratio                      {bare_s / ours_s:9.2f}  (target >= 0.95)")


if __name__ == "__main__":
    main()
