"""Where nlpipe's QA time goes: spaCy, generation (prefill, decode), scoring, the rest.

    python benchmarks/qa_profile.py [--docs 8] [--questions 5] [--device cpu|cuda]

Runs pipelines/qa.cfg over SQuAD paragraphs (the workload of qa_throughput.py) with timers
wrapped around the stages, and prints each stage's seconds and share of the wall time.
"""

import argparse
import time
from collections import defaultdict
from contextlib import contextmanager

import torch
from _common import qa_pipeline
from qa_throughput import sync, workload

import nlpipe.llm.engine as engine
import nlpipe.llm.generation as generation
import nlpipe.llm.scoring as scoring
from nlpipe.components.llama_qa import LlamaQA

seconds = defaultdict(float)


def timed(owner, name: str, stage: str, device: torch.device) -> None:
    """Replace owner.name with a wrapper adding its wall time to `stage`."""
    original = getattr(owner, name)

    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            sync(device)
            seconds[stage] += time.perf_counter() - started

    setattr(owner, name, wrapper)


@contextmanager
def stage(name: str, device: torch.device):
    started = time.perf_counter()
    yield
    sync(device)
    seconds[name] += time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=8)
    parser.add_argument("--questions", type=int, default=5, help="questions per document")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    nlp = qa_pipeline({"components.llama_qa.model.device": args.device})
    qa = nlp.get_pipe("llama_qa")
    device = qa.llm.device
    docs = workload(args.questions, args.docs)
    # The engine calls generate() and score_batch().
    timed(engine, "generate", "generate: prefill + decode", device)
    timed(generation, "prefill", "generate: prefill", device)
    timed(scoring, "prefill_prefixes", "scoring: contexts", device)
    timed(engine, "score_batch", "scoring: all", device)
    timed(LlamaQA, "annotate", "spaCy: questions and replies", device)
    list(qa.pipe(nlp.pipe(["warm-up text."], disable=["llama_qa"])))
    seconds.clear()
    started = time.perf_counter()
    with stage("spaCy: documents", device):
        spacy_docs = list(nlp.pipe([context for context, _ in docs], disable=["llama_qa"]))
    for doc, (_, qas) in zip(spacy_docs, docs):
        doc._.questions = [q for q, _ in qas]
    with stage("llama_qa", device):
        list(qa.pipe(spacy_docs, batch_size=len(spacy_docs)))
    wall = time.perf_counter() - started
    n_questions = sum(len(qas) for _, qas in docs)
    rows = {
        "spaCy: documents": seconds["spaCy: documents"],
        "spaCy: questions and replies": seconds["spaCy: questions and replies"],
        "prefill (generation)": seconds["generate: prefill"],
        "decode (generation)": seconds["generate: prefill + decode"] - seconds["generate: prefill"],
        "scoring: shared document contexts": seconds["scoring: contexts"],
        "scoring: question prompts + candidates": seconds["scoring: all"] - seconds["scoring: contexts"],
    }
    rows["python: prompts, candidates, selection"] = wall - sum(rows.values())
    print(f"{n_questions} questions over {len(docs)} documents on {device}: {wall:.2f} s, "
          f"{n_questions / wall:.2f} questions/s")
    for name, value in rows.items():
        print(f"{name:<40} {value:7.2f} s {100 * value / wall:5.1f} %")


if __name__ == "__main__":
    main()
