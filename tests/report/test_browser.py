"""Reports opened in real headless Chromium: highlights in the rendered DOM, nothing run from a document.

Skipped where Chromium is missing, unless NLPIPE_REQUIRE_BROWSER=1 (as .ci/run sets), which
makes a missing browser a failure so that CI cannot pass without these tests.
"""

import os
import re
import subprocess
import sys

import pytest
from spacy.vocab import Vocab

from nlpipe.io.docbin import read_docs
from nlpipe.report import write_report
from nlpipe.report.browser import dump_dom, find_chromium

from ..conftest import REPO
from .conftest import PACKED, XSS, Elements, ShownText

pytestmark = pytest.mark.slow  # each render starts a browser
SETTLE_MS = 10_000  # virtual time for what the page renders after its load; idle time is skipped, not waited


@pytest.fixture(autouse=True)
def chromium():
    if find_chromium() is None:
        if os.environ.get("NLPIPE_REQUIRE_BROWSER") == "1":
            pytest.fail("NLPIPE_REQUIRE_BROWSER=1 but no chromium on PATH")
        pytest.skip("no chromium on PATH (apt-get install chromium)")


def grounded_labels(doc) -> list[str]:
    return sorted(f"Q{a['question_index'] + 1}" for a in doc._.answers if a["start_char"] is not None)


def test_untrusted_text_stays_text_in_the_browser(make_doc, tmp_path):
    docs = [make_doc(XSS, f"{XSS} is in Paris.", [("Paris", XSS), (None, XSS)], entities=[("Paris", XSS)],
                     error={"type": XSS, "message": XSS}),
            make_doc(f"closed {XSS}", f"Rendered on opening: {XSS} in Paris.", [("Paris", XSS)]),
            make_doc(f"next page {XSS}", f"Unpacked with its page: {XSS} in Paris.", [("Paris", XSS)])]
    report = str(tmp_path / "report.html")
    write_report(docs, report, title=XSS, source=XSS, expanded=1, page_size=2)
    # Each anchor opens its document, rendered from its packed page: the second one's on the
    # page shown, the third one's on the next page, which replaces the first in the DOM.
    for anchor, shown in (("doc-1", ["doc-0", "doc-1"]), ("doc-2", ["doc-2"])):
        dom, _ = dump_dom(report, anchor=anchor, settle_ms=SETTLE_MS)
        elements = Elements(dom)
        [body] = elements.named("body")
        assert "data-xss" not in body  # neither payload's handler ran
        assert not elements.named("img")
        assert [a for a in elements.named("script") if a.get("type") != PACKED] == [{}]  # the page's own
        labels = elements.labels()
        assert sorted(labels) == shown and all(labels[section].count("Q1") == 1 for section in shown)  # rendered
        assert {"open": ""}.items() <= dict(elements.named("details")[-1]).items()  # the anchor's, opened
        assert dom.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 4 * len(shown)
        assert f"<title>{XSS.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')}</title>" in dom


@pytest.fixture(scope="module")
def example_run(tmp_path_factory, real_llm_dir):
    """The README's example run with the real default models, as a DocBin."""
    output = tmp_path_factory.mktemp("example") / "answers.spacy"
    done = subprocess.run([sys.executable, "-m", "nlpipe", "run", "qa", "--input", str(REPO / "examples" / "docs"),
                           "--questions", str(REPO / "examples" / "questions.txt"), "--output", str(output),
                           "--components.llama_qa.model.path", str(real_llm_dir)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    return output


def test_the_example_runs_report_highlights_every_grounded_answer(example_run, tmp_path):
    report = str(tmp_path / "report.html")
    done = subprocess.run([sys.executable, "-m", "nlpipe", "report", str(example_run), "--output", report],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    docs = list(read_docs(str(example_run), Vocab()))
    dom, _ = dump_dom(report)
    labels = Elements(dom).labels()
    assert len(docs) == 3 and sum(len(grounded_labels(d)) for d in docs) >= 6
    for index, doc in enumerate(docs):
        shown = sorted(label for label in labels[f"doc-{index}"] if re.fullmatch(r"Q\d+", label))
        assert shown == grounded_labels(doc), doc._.doc_id
        assert any(label.startswith("evidence") for label in labels[f"doc-{index}"])
        assert set(labels[f"doc-{index}"]) & {e.label_ for e in doc.ents}  # entities are shown too
        # The text as written: "Paris, France." (a Doc from a record loses its last space alone).
        [section] = re.findall(rf'<details class="doc" id="doc-{index}".*?</details>', dom, re.DOTALL)
        assert ShownText(section).text.rstrip() == doc.text.rstrip(), doc._.doc_id
