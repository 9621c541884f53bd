"""Local engine vs `--engine ray` with 1 and 2 workers, on the same documents, for annotate.cfg and qa.cfg.

Documents: one per SQuAD question (dev + train parts in ../shared/data, 1,079 questions), the
sentence of its paragraph that holds the answer (or with --documents paragraph the whole
paragraph), asking that question (JSONL). Short documents keep 500+ of them through the real
model within minutes, while every document still costs a model call. Runs are interleaved
(local, ray x1, ray x2, then again for --rounds) so that load from other processes on a shared
machine hits every engine alike; the load average is printed beside each run. One local Ray is
started first and joined by every Ray run: its start-up (ray.init) is printed once and added
back in the "with ray.init" ratio, which is what one `nlpipe run --engine ray` pays. Per run:
docs/s end to end (pipeline build, model load, actors included), the time to the first record,
docs/s after it, and the ratios to the local run of the same round; then whether every engine
wrote the same set of records.

    NLPIPE_MODELS=/path/to/models python benchmarks/ray_scaling.py [--docs 540] [--rounds 1]
        [--documents sentence|paragraph] [--configs annotate qa]
"""

import argparse
import json
import math
import os
import re
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, SQUAD_DEV, require_squad

SQUAD_TRAIN = SQUAD_DEV.with_name("squad-train-v1.1-part.json")
FLOAT_NOISE = 1e-4
ENGINES = (("local", None), ("ray x1", 1), ("ray x2", 2))
ACTOR_TITLE = b"ray::MapWorker(MapBatches(PipelineWorker))"


def actor_rss_mib() -> list[int]:
    """Resident memory of this run's actors (children of the raylet this process started), MiB."""
    def parent(pid) -> int:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    sizes = []
    for entry in Path("/proc").iterdir():
        try:
            if (entry.name.isdigit() and (entry / "cmdline").read_bytes().startswith(ACTOR_TITLE)
                    and parent(parent(entry.name)) == os.getpid()):
                status = (entry / "status").read_text()
                sizes.append(int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) // 1024)
        except (OSError, AttributeError):  # ended while we looked
            continue
    return sorted(sizes)


def answer_sentence(context: str, start: int) -> str:
    """The sentence of `context` around character `start` (split at . ! ? and a space)."""
    begin = max((m.end() for m in re.finditer(r"[.!?]\s+", context[:start])), default=0)
    end = re.search(r"[.!?](\s|$)", context[start:])
    return context[begin:start + end.end() if end else len(context)].strip()


def write_documents(path: Path, count: int, unit: str = "sentence") -> int:
    """The first `count` SQuAD questions as documents, each the `unit` ("sentence" or
    "paragraph") of its paragraph that holds the answer; returns how many were written."""
    written = 0
    with open(path, "w", encoding="utf-8") as out:
        for squad in (SQUAD_DEV, SQUAD_TRAIN):
            for article in json.loads(require_squad(squad).read_text(encoding="utf-8"))["data"]:
                for paragraph in article["paragraphs"]:
                    for qa in paragraph["qas"]:
                        if written == count:
                            return written
                        text = (paragraph["context"] if unit == "paragraph" else
                                answer_sentence(paragraph["context"], qa["answers"][0]["answer_start"]))
                        out.write(json.dumps({"id": qa["id"], "text": text, "questions": [qa["question"]]},
                                             ensure_ascii=False) + "\n")
                        written += 1
    return written


def timed_run(config: Path, settings, workers: int | None, n_docs: int) -> tuple[float, float, list]:
    """(wall seconds, seconds to the first record, actors' RSS at the first and the last record)
    of one run with a fresh pipeline (local) or actor pool (Ray), build and model load included."""
    from nlpipe.config import build_pipeline, load_config
    from nlpipe.distributed.ray_engine import ray_records
    from nlpipe.runner import run

    started = time.perf_counter()
    first, rss = [], []

    def on_record(record, summary):
        if summary.documents in (1, n_docs):
            first.append(time.perf_counter() - started)
            rss.append(actor_rss_mib())
    if workers is None:
        nlp, engine = build_pipeline(load_config(config)), None
        for _, component in nlp.pipeline:
            if getattr(component, "llm", None) is not None:
                component.llm.load()
    else:
        settings.workers = workers
        nlp, engine = build_pipeline(load_config(config)), ray_records(str(config), {}, settings)
    run(nlp, settings, overwrite=True, engine=engine, on_record=on_record)
    return time.perf_counter() - started, first[0], rss


def sorted_records(path: str) -> list[dict]:
    records = map(json.loads, Path(path).read_text(encoding="utf-8").splitlines())
    return sorted(({k: v for k, v in r.items() if k != "fingerprint"} for r in records), key=lambda r: r["id"])


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


def bench_config(name: str, work: Path, n_docs: int, rounds: int, ray_init: float) -> None:
    from nlpipe.config import job_settings, load_config

    config = REPO / "pipelines" / f"{name}.cfg"
    outputs, local = {}, None
    for round_ in range(1, rounds + 1):
        for label, workers in ENGINES:
            settings = job_settings(load_config(config))
            settings.input, settings.output = str(work / "docs.jsonl"), str(work / f"{name}-{label}.jsonl")
            load = os.getloadavg()[0]
            wall, first, rss = timed_run(config, settings, workers, n_docs)
            outputs.setdefault(label, sorted_records(settings.output))
            rate, after = n_docs / wall, (n_docs - 1) / (wall - first)
            local = (rate, after) if workers is None else local
            with_init = n_docs / (wall + ray_init) / local[0] if workers else 1.0
            print(f"{name:<9}{round_:>3} {label:<8}{load:>6.1f}{wall:>8.1f}{rate:>8.2f}{rate / local[0]:>8.2f}"
                  f"{with_init:>10.2f}{first:>8.1f}{after:>8.2f}{after / local[1]:>8.2f}"
                  f"{' ' + ' -> '.join(map(str, rss)) + ' MiB' if workers else '':>0}", flush=True)
    exact = all(records == outputs["local"] for records in outputs.values())
    close = all(same(records, outputs["local"]) for records in outputs.values())
    print(f"{name}: every engine wrote the same set of records: {close} (floats within {FLOAT_NOISE}), "
          f"byte for byte: {exact} ({len(outputs['local'])} records)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=540, help="documents (SQuAD questions, at most 1,079)")
    parser.add_argument("--documents", choices=["sentence", "paragraph"], default="sentence",
                        help="each document: the answer's sentence, or its whole paragraph")
    parser.add_argument("--rounds", type=int, default=1, help="times each engine runs, interleaved")
    parser.add_argument("--configs", nargs="+", default=["annotate", "qa"], choices=["annotate", "qa"])
    args = parser.parse_args()
    os.chdir(REPO)
    from nlpipe.distributed.ray_engine import ray_session

    work = Path(tempfile.mkdtemp(prefix="ray_scaling-"))
    n_docs = write_documents(work / "docs.jsonl", args.docs, args.documents)
    print(f"{n_docs} documents (a SQuAD answer's {args.documents}, its question); {os.cpu_count()} CPUs")
    started = time.perf_counter()
    with ray_session(None):
        ray_init = time.perf_counter() - started
        print(f"Ray start-up (ray.init, local instance): {ray_init:.1f} s")
        print(f"{'pipeline':<9}{'rnd':>3} {'engine':<8}{'load':>6}{'wall s':>8}{'docs/s':>8}{'x local':>8}"
              f"{'w/ init':>10}{'first s':>8}{'after':>8}{'x local':>8} actors' RSS first -> last record")
        for name in args.configs:
            bench_config(name, work, n_docs, args.rounds, ray_init)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    sys.exit(main())
