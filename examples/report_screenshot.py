"""The README's report screenshot: the example run, its report, and headless Chromium's picture of it.

    python examples/report_screenshot.py [--folder DIR] [--png docs/report.png]

Runs `nlpipe run qa` over examples/docs with examples/questions.txt (the default models) into
DIR/answers.spacy, `nlpipe report` on it into DIR/report.html, and screenshots that page with
the same headless Chromium command the browser tests use.
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from nlpipe.errors import NlpipeError
from nlpipe.report.browser import find_chromium, screenshot

EXAMPLES = Path(__file__).resolve().parent


def nlpipe(folder: Path, *args: str) -> None:
    # In the folder, so that the report names its input "answers.spacy", not a temporary path.
    done = subprocess.run([sys.executable, "-m", "nlpipe", *args], cwd=folder)
    if done.returncode:
        raise SystemExit(f"nlpipe {args[0]} failed (exit code {done.returncode})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, help="keep the run and the report here (default: a temporary folder)")
    parser.add_argument("--png", type=Path, default=EXAMPLES.parent / "docs" / "report.png")
    args = parser.parse_args()
    args.png = args.png.resolve()
    if find_chromium() is None:  # before the run: a missing browser costs no wait
        raise SystemExit("no chromium on PATH: install it (apt-get install chromium) to take the screenshot")
    with tempfile.TemporaryDirectory() as temporary:
        folder = (args.folder or Path(temporary)).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        nlpipe(folder, "run", "qa", "--input", str(EXAMPLES / "docs"), "--questions", str(EXAMPLES / "questions.txt"),
               "--output", "answers.spacy")
        nlpipe(folder, "report", "answers.spacy", "--output", "report.html")
        args.png.parent.mkdir(parents=True, exist_ok=True)
        try:
            screenshot(str(folder / "report.html"), str(args.png), width=1200, height=1500)
        except NlpipeError as err:
            raise SystemExit(str(err)) from None
    print(f"screenshot: {args.png}")


if __name__ == "__main__":
    main()
