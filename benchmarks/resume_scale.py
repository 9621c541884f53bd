"""Resuming a large output: wall time and peak RSS of `nlpipe run` adding one document to a ~1 GB output.

    python benchmarks/resume_scale.py [--gigabytes 1.0]

The output is made of one real record of `pipelines/annotate.cfg` (tokens included, so records
are the size a real annotation run writes), copied under new ids until it holds the asked size;
the input holds those documents plus one new one. The resumed run must read every line (ids,
fingerprints, a check that each is a record), skip all but the new document and append it.
Measured in a separate process: `ru_maxrss` of the child, wall time around it.
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO

from nlpipe.io.writers import scan_output

CONFIG = str(REPO / "pipelines" / "annotate.cfg")
TEXT = ("The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. "
        "It is named after the engineer Gustave Eiffel, whose company designed and built the tower. ") * 8


def nlpipe(*args: str) -> float:
    """Seconds the command took; exits with its stderr when it fails."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "nlpipe.cli", *args], capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        sys.exit(done.stderr[-2000:])
    return time.perf_counter() - started


def build_output(tmp: Path, size: int) -> tuple[Path, Path, int]:
    """(input, output, records in the output) for an output of about `size` bytes."""
    seed_input, seed_output = tmp / "seed.jsonl", tmp / "seed_out.jsonl"
    seed_input.write_text(json.dumps({"id": "seed", "text": TEXT}) + "\n", encoding="utf-8")
    nlpipe("run", CONFIG, "--input", str(seed_input), "--output", str(seed_output))
    record = json.loads(seed_output.read_text(encoding="utf-8"))
    source, output = tmp / "docs.jsonl", tmp / "big.jsonl"
    written, count = 0, 0
    with open(source, "w", encoding="utf-8") as docs, open(output, "w", encoding="utf-8") as out:
        while written < size:
            doc_id = f"doc{count}"
            # Same text, same questions (none): the input fingerprint of the seed record holds.
            docs.write(json.dumps({"id": doc_id, "text": TEXT}) + "\n")
            line = json.dumps({**record, "id": doc_id}, ensure_ascii=False) + "\n"
            out.write(line)
            written += len(line.encode("utf-8"))
            count += 1
        docs.write(json.dumps({"id": "new", "text": TEXT}) + "\n")
    return source, output, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gigabytes", type=float, default=1.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        source, output, count = build_output(tmp, int(args.gigabytes * 1e9))
        size = output.stat().st_size
        seconds = nlpipe("run", CONFIG, "--input", str(source), "--output", str(output))
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        lines = sum(1 for _ in open(output, "rb"))
        assert lines == count + 1, (lines, count)
        started = time.perf_counter()
        scan_output(str(output))
        scan = time.perf_counter() - started
        startup = nlpipe("run", CONFIG, "--input", str(tmp / "seed.jsonl"), "--output", str(tmp / "small.jsonl"))
    print(f"output {size / 1e9:.2f} GB, {count:,} records: resumed run adding 1 document took {seconds:.1f} s "
          f"(a run over 1 document into a new output: {startup:.1f} s; reading the output alone: {scan:.1f} s), "
          f"peak RSS {peak_mib:,.0f} MiB")


if __name__ == "__main__":
    main()
