"""Peak memory of one long document: `nlpipe run` on a single document of 1, 6 and 20 MB.

    python benchmarks/long_document.py [--mb 1 6 20] [--config pipelines/annotate.cfg] [--word Paris]
                                       [-- extra nlpipe run options, e.g. --nlpipe.max_document_chars 30000000]

Each size is a separate `nlpipe run` process over one text file of `--word` repeated (the case
issue #17 measured: "Paris " * 200_000 took 3.5 GB before pieces were annotated one at a time).
Prints peak RSS, wall time and whether the record was an error (above [nlpipe] max_document_chars).
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO

MEASURE = ("import resource, sys; from nlpipe.cli import main\n"
           "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
           "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")


def measure(config: str, megabytes: float, word: str, extra: list[str], tmp: Path) -> tuple[float, float, str]:
    """(peak RSS in MiB, seconds, what the record holds) for one document of `megabytes` MB."""
    source, output = tmp / f"doc{megabytes}.txt", tmp / f"out{megabytes}.jsonl"
    unit = f"{word} "
    source.write_text(unit * int(megabytes * 1_000_000 / len(unit)), encoding="utf-8")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", MEASURE, "run", config, "--input", str(source), "--output",
                           str(output), "--overwrite", *extra], capture_output=True, text=True, cwd=REPO)
    seconds = time.perf_counter() - started
    if not output.is_file() or not output.read_text(encoding="utf-8").strip():
        sys.exit(done.stderr[-2000:])
    record = json.loads(output.read_text(encoding="utf-8").splitlines()[0])
    outcome = f"error {record['error']['type']}" if "error" in record else f"{len(record['entities']):,} entities"
    return int(done.stdout.strip().splitlines()[-1]) / 1024, seconds, outcome  # ru_maxrss: KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, nargs="+", default=[1, 6, 20])
    parser.add_argument("--config", default="pipelines/annotate.cfg")
    parser.add_argument("--word", default="Paris")
    parser.add_argument("extra", nargs="*", help="options passed on to nlpipe run (after --)")
    args = parser.parse_args()
    print("| document | peak RSS | wall time | record |\n| --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for megabytes in args.mb:
            rss, seconds, outcome = measure(args.config, megabytes, args.word, args.extra, Path(tmp))
            print(f"| {megabytes:g} MB | {rss:,.0f} MiB | {seconds:.0f} s | {outcome} |", flush=True)


if __name__ == "__main__":
    main()
