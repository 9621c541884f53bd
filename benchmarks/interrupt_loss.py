"""Documents lost by Ctrl-C at a random moment of a QA run, over N trials.

    python benchmarks/interrupt_loss.py [--trials 10] [--docs 40] [--questions 3] [--seed 0]

pipelines/qa.cfg with the default model over SQuAD dev paragraphs (with their first questions, as JSONL).
One uninterrupted run gives the run's length D; each trial then runs afresh and gets SIGINT
from a timer at a uniformly random moment in (0, D), delivered as Ctrl-C is (to the main
thread, wherever it is). A document is lost when the LLM stage had taken it in (its model
work had started) but its record was not in the output when the run stopped: that work is
thrown away and redone on resume. Also printed: the records written, and the seconds of model
work since the last record (work thrown away).
"""

import argparse
import json
import os
import random
import signal
import statistics
import tempfile
import threading
import time
from pathlib import Path

from _common import qa_pipeline, require_squad

from nlpipe.config import JobSettings
from nlpipe.processing import llm_stage
from nlpipe.runner import run
from nlpipe.squad import read_squad


def write_input(path: Path, n_docs: int, n_questions: int) -> None:
    paragraphs = [p for p in read_squad(require_squad()) if len(p.questions) >= n_questions][:n_docs]
    with open(path, "w", encoding="utf-8") as out:
        for i, paragraph in enumerate(paragraphs):
            questions = [question for _, question, _ in paragraph.questions[:n_questions]]
            out.write(json.dumps({"id": f"p{i}", "text": paragraph.context, "questions": questions}) + "\n")


def count_llm_intake(nlp) -> list[int]:
    """Counts the Docs the LLM components take from their input stream."""
    taken = [0]
    for name in llm_stage(nlp):
        component = nlp.get_pipe(name)
        pipe = type(component).pipe

        def counting_pipe(stream, pipe=pipe, component=component, **kwargs):
            def counted():
                for doc in stream:
                    taken[0] += 1
                    yield doc
            return pipe(component, counted(), **kwargs)
        component.pipe = counting_pipe
    return taken


def trial(nlp, settings: JobSettings, taken: list[int], at: float | None) -> dict:
    taken[0] = 0
    Path(settings.output).unlink(missing_ok=True)
    written, last_record = [0], [time.perf_counter()]

    def on_record(record, summary):
        written[0] += 1
        last_record[0] = time.perf_counter()
    timer = threading.Timer(at, os.kill, (os.getpid(), signal.SIGINT)) if at is not None else None
    started = time.perf_counter()
    interrupted = False
    try:
        if timer:
            timer.start()
        run(nlp, settings, on_record)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if timer:
            timer.cancel()
    stopped = time.perf_counter()
    on_disk = sum(1 for _ in open(settings.output, "rb")) if Path(settings.output).exists() else 0
    assert on_disk == written[0], (on_disk, written[0])  # every record reported is in the file
    return {"seconds": stopped - started, "interrupted": interrupted, "written": written[0],
            "lost": taken[0] - written[0], "work_lost_s": stopped - last_record[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--docs", type=int, default=40)
    parser.add_argument("--questions", type=int, default=3, help="questions per document")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run-seconds", type=float, help="length of an uninterrupted run, if known: skips it")
    args = parser.parse_args()
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in the background
    nlp = qa_pipeline()
    taken = count_llm_intake(nlp)
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "docs.jsonl"
        write_input(source, args.docs, args.questions)
        settings = JobSettings(input=str(source), output=str(Path(folder) / "out.jsonl"), batch_size=32)
        if args.run_seconds:
            whole = {"seconds": args.run_seconds}
        else:
            whole = trial(nlp, settings, taken, None)
            print(f"uninterrupted: {whole['written']} documents in {whole['seconds']:.1f} s, lost {whole['lost']}")
        results = []
        for n in range(args.trials):
            at = rng.uniform(0, whole["seconds"])
            result = trial(nlp, settings, taken, at)
            results.append(result)
            print(f"trial {n + 1}: SIGINT at {at:5.1f} s, interrupted {result['interrupted']}, written "
                  f"{result['written']}, lost {result['lost']} documents, {result['work_lost_s']:.1f} s of work")
    lost = [r["lost"] for r in results]
    print(f"documents lost over {len(results)} trials: mean {statistics.mean(lost):.1f}, max {max(lost)}, "
          f"min {min(lost)}; model work thrown away: mean "
          f"{statistics.mean(r['work_lost_s'] for r in results):.1f} s")


if __name__ == "__main__":
    main()
