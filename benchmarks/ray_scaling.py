"""Local engine vs `--engine ray` with 1 and 2 workers, on the same documents, for annotate.cfg and qa.cfg.

Documents: the SQuAD paragraphs in ../shared/data (dev + train parts, 109), repeated under new
ids to at least --docs documents, each asking its paragraph's first question. Each engine runs
twice: over the first batch_size documents (its start-up: pipeline build and model load, for
Ray also starting the actors, plus one batch) and over all of them. Prints per pipeline and
engine: docs/s end to end (start-up included), docs/s after start-up ((N - batch) / (full
run - start-up run)), both as ratios to the local engine, and the start-up; then Ray's own
start-up (ray.init) and whether every engine wrote the same set of records.

    python benchmarks/ray_scaling.py [--docs 500] [--configs annotate qa]
"""

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, SQUAD_DEV, require_squad

SQUAD_TRAIN = SQUAD_DEV.with_name("squad-train-v1.1-part.json")
FLOAT_NOISE = 1e-4


def write_documents(path: Path, at_least: int) -> int:
    paragraphs = [(article["title"], i, paragraph) for squad in (SQUAD_DEV, SQUAD_TRAIN)
                  for article in json.loads(require_squad(squad).read_text(encoding="utf-8"))["data"]
                  for i, paragraph in enumerate(article["paragraphs"])]
    rounds = math.ceil(at_least / len(paragraphs))
    with open(path, "w", encoding="utf-8") as out:
        for r in range(rounds):
            for title, i, paragraph in paragraphs:
                record = {"id": f"{title}-{i}-r{r}", "text": paragraph["context"],
                          "questions": [paragraph["qas"][0]["question"]]}
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
    return rounds * len(paragraphs)


def timed_run(config: Path, settings, workers: int | None) -> float:
    """Wall seconds of one run with a fresh pipeline (local) or actor pool (Ray)."""
    from nlpipe.config import build_pipeline, load_config
    from nlpipe.distributed import ray_records
    from nlpipe.runner import run

    started = time.perf_counter()
    if workers is None:
        nlp, engine = build_pipeline(load_config(config)), None
        for _, component in nlp.pipeline:
            if getattr(component, "llm", None) is not None:
                component.llm.load()
    else:
        settings.workers = workers
        nlp, engine = None, ray_records(str(config), {}, settings)
    run(nlp, settings, overwrite=True, engine=engine)
    return time.perf_counter() - started


def sorted_records(path: str) -> list[dict]:
    return sorted(map(json.loads, Path(path).read_text(encoding="utf-8").splitlines()), key=lambda r: r["id"])


def same(a, b) -> bool:
    """Equal, floats up to FLOAT_NOISE: the engines batch prompts differently, so float32
    padding changes a confidence or log-prob in its last digits (the answers stay the same)."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, abs_tol=FLOAT_NOISE)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(same, a, b))
    return a == b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=500, help="at least this many documents")
    parser.add_argument("--configs", nargs="+", default=["annotate", "qa"], choices=["annotate", "qa"])
    args = parser.parse_args()
    os.chdir(REPO)  # the configs name models/smollm2-135m relative to the repository
    from nlpipe.config import job_settings, load_config
    from nlpipe.distributed.ray_engine import ray_session

    work = Path(tempfile.mkdtemp(prefix="ray_scaling-"))
    n_docs = write_documents(work / "docs.jsonl", args.docs)
    print(f"{n_docs} documents (SQuAD paragraphs, one question each); {os.cpu_count()} CPUs; "
          f"load average before: {os.getloadavg()[0]:.1f}")
    started = time.perf_counter()
    with ray_session(None):
        print(f"Ray start-up (ray.init, local instance): {time.perf_counter() - started:.1f} s")
        print(f"{'pipeline':<10}{'engine':<10}{'docs/s':>8}{'x local':>9}{'after start-up':>16}{'x local':>9}"
              f"{'start-up s':>12}")
        for name in args.configs:
            config = REPO / "pipelines" / f"{name}.cfg"
            settings = job_settings(load_config(config))
            first_batch = work / f"first-{settings.batch_size}.jsonl"
            lines = (work / "docs.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
            first_batch.write_text("".join(lines[:settings.batch_size]), encoding="utf-8")
            outputs, rates = {}, {}
            for label, workers in (("local", None), ("ray x1", 1), ("ray x2", 2)):
                settings.input, settings.output = str(first_batch), str(work / "first-out.jsonl")
                startup = timed_run(config, settings, workers)
                settings.input, settings.output = str(work / "docs.jsonl"), str(work / f"{name}-{label}.jsonl")
                wall = timed_run(config, settings, workers)
                outputs[label] = sorted_records(settings.output)
                rates[label] = (n_docs / wall, (n_docs - settings.batch_size) / (wall - startup))
                end_to_end, steady = rates[label]
                print(f"{name:<10}{label:<10}{end_to_end:>8.2f}{end_to_end / rates['local'][0]:>9.2f}"
                      f"{steady:>16.2f}{steady / rates['local'][1]:>9.2f}{startup:>12.1f}", flush=True)
            exact = all(records == outputs["local"] for records in outputs.values())
            close = all(same(records, outputs["local"]) for records in outputs.values())
            print(f"{name}: the same set of records: {close} (floats within {FLOAT_NOISE}), byte for byte: {exact} "
                  f"({len(outputs['local'])} records)")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    sys.exit(main())
