"""Memory stays flat on long runs: peak RSS of a 5,000-document run against a 500-document run.

    python benchmarks/memory.py [--small 500] [--large 5000] [--config pipelines/annotate.cfg]

Each run is a separate `nlpipe run` process over SQuAD paragraphs made distinct per document
(new words keep entering spaCy's string store, as in a real corpus). Target: ratio <= 1.2.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import REPO, require_squad

from nlpipe.squad import read_squad


def peak_rss_mib(config: str, n_docs: int, tmp: Path) -> float:
    paragraphs = [p.context for p in read_squad(require_squad())]
    source = tmp / f"docs{n_docs}.jsonl"
    with open(source, "w", encoding="utf-8") as out:
        for i in range(n_docs):
            # A made-up name per document: the vocabulary grows as it would over real text.
            text = f"Report {i} by analyst Zq{i}x{i * 7919 % 10007}. " + paragraphs[i % len(paragraphs)]
            out.write(json.dumps({"id": str(i), "text": text}) + "\n")
    code = ("import resource, sys; from nlpipe.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    done = subprocess.run([sys.executable, "-c", code, "run", config, "--input", str(source), "--output",
                           str(tmp / f"out{n_docs}.jsonl"), "--overwrite"], capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        sys.exit(done.stderr[-2000:])
    return int(done.stdout.strip().splitlines()[-1]) / 1024  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=500)
    parser.add_argument("--large", type=int, default=5000)
    parser.add_argument("--config", default="pipelines/annotate.cfg")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        small = peak_rss_mib(args.config, args.small, Path(tmp))
        large = peak_rss_mib(args.config, args.large, Path(tmp))
    print(f"{args.config}: peak RSS {small:.0f} MiB for {args.small} documents, {large:.0f} MiB for {args.large}")
    print(f"ratio {large / small:.2f}  (target <= 1.2)")


if __name__ == "__main__":
    main()
