"""One self-contained HTML file: summary, evaluation, then a collapsible section per document.

Docs are rendered as they arrive into a temporary file, so memory stays flat however long the
run; the summary, which needs every Doc, is written in front of them at the end. Only the first
`expanded` documents are open and in the page's DOM; the body of every other one is a JSON
string the page's script turns into HTML when it is opened, so a 10,000-document report parses
as fast as a short one.
"""

import base64
import hashlib
import json
import os
import shutil
import tempfile
from html import escape
from pathlib import Path
from typing import Iterable

from spacy.tokens import Doc

from ..errors import Errors, InputError
from . import markup
from .stats import RunStats, eval_stats

EXPANDED = 20  # documents open (and rendered into the DOM) when the report opens

# Opens a document when its section is toggled or its anchor (#doc-N) is visited.
SCRIPT = """
(function () {
  function fill(section) {
    var lazy = section.querySelector("script.lazy");
    if (!lazy) return;
    var body = document.createElement("div");
    body.className = "body";
    body.innerHTML = JSON.parse(lazy.textContent);
    lazy.replaceWith(body);
  }
  document.addEventListener("toggle", function (event) {
    if (event.target.classList && event.target.classList.contains("doc") && event.target.open) fill(event.target);
  }, true);
  function openTarget() {
    var section = location.hash ? document.getElementById(location.hash.slice(1)) : null;
    if (!section || !section.classList.contains("doc")) return;
    fill(section);
    section.open = true;
    section.scrollIntoView();
  }
  window.addEventListener("hashchange", openTarget);
  openTarget();
  document.getElementById("expand-all").addEventListener("click", function () {
    document.querySelectorAll("details.doc").forEach(function (section) { fill(section); section.open = true; });
  });
  document.getElementById("collapse-all").addEventListener("click", function () {
    document.querySelectorAll("details.doc").forEach(function (section) { section.open = false; });
  });
})();
"""
SCRIPT_HASH = base64.b64encode(hashlib.sha256(SCRIPT.encode("utf-8")).digest()).decode("ascii")
# No fetches at all (the file must work offline), and only the script above may run: a second
# line of defence behind the escaping, should anything from a document ever reach the markup.
POLICY = f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'sha256-{SCRIPT_HASH}'"
STYLE = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1100px;padding:1em 1.5em;
color:#222}
h1{margin:.2em 0}h2{border-bottom:1px solid #ddd;padding-bottom:.2em}.muted,.source{color:#777}
.cards{display:flex;flex-wrap:wrap;gap:.8em}.card{border:1px solid #ddd;border-radius:6px;padding:.5em 1em;
min-width:7em;color:#555}.big{font-size:1.6em;font-weight:600;color:#222}
.histogram text{font-size:10px;fill:#555}
table{border-collapse:collapse;margin:.6em 0;width:100%}th,td{border-bottom:1px solid #eee;padding:.25em .5em;
text-align:left;vertical-align:top}th{font-weight:600;color:#555}
details.doc{border:1px solid #ddd;border-radius:6px;margin:.5em 0;padding:.3em .8em;content-visibility:auto;
contain-intrinsic-size:auto 2.2em}
details.doc>summary{cursor:pointer}.num{color:#777}.doc-id{font-weight:600}
.badge{font-size:.8em;border-radius:3px;padding:1px 5px;background:#eef}.badge.bad{background:#fdd}
.badge.warn{background:#ffeec2}.bad,.error{color:#b00}.warning{color:#8a5a00}
.bar{display:inline-block;width:5em;height:.6em;background:#eee;border-radius:3px;vertical-align:middle}
.bar>span{display:block;height:100%;background:#fb8500;border-radius:3px}
tr.free td:nth-child(3){font-style:italic}
.legend span{border-radius:3px;padding:0 4px;margin-right:.5em}
""" + markup.markup_css()


def check_report_path(path: str) -> Path:
    """The report's path, if it names an HTML file (E095 otherwise)."""
    if Path(path).suffix.lower() not in (".html", ".htm"):
        raise InputError(Errors.E095.format(path=path))
    return Path(path)


class HtmlReport:
    """Add Docs (each with `doc._.doc_id`, `doc._.answers`, `doc._.qa_error`) one by one, then
    `close()` writes the report to `path` in one step.

    `evaluation`: `evaluate_squad`'s predictions, for EM/F1 by question type and the worst answers.
    """

    def __init__(self, path: str, title: str = "nlpipe report", source: str = "", expanded: int = EXPANDED):
        self.path = check_report_path(path)
        self.title, self.source, self.expanded = title, source, expanded
        self.stats = RunStats()
        self._documents = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")

    def add(self, doc: Doc) -> None:
        index = self.stats.documents
        self.stats.add(index, doc)
        line, body = markup.document(index, doc)
        if index < self.expanded:
            self._documents.write(f'<details class="doc" id="doc-{index}" open>{line}<div class="body">{body}'
                                  f'</div></details>\n')
        else:
            self._documents.write(f'<details class="doc" id="doc-{index}">{line}'
                                  f'<script type="application/json" class="lazy">{_json_text(body)}</script>'
                                  f'</details>\n')

    def close(self, evaluation: list[dict] | None = None) -> RunStats:
        temporary = self.path.with_name(f".{self.path.name}.nlpipe-tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(temporary, "w", encoding="utf-8", errors="replace") as out:
                out.write(self._head())
                out.write(markup.summary(self.stats))
                if evaluation is not None:
                    out.write(markup.evaluation(eval_stats(evaluation)))
                out.write(_documents_header(self.stats.documents, self.expanded))
                self._documents.seek(0)
                shutil.copyfileobj(self._documents, out)
                out.write(f"</section><script>{SCRIPT}</script></body></html>\n")
            os.replace(temporary, self.path)
        except OSError as err:
            if temporary.exists():
                temporary.unlink()
            raise InputError(Errors.E096.format(path=self.path, reason=err.strerror or err)) from None
        finally:
            self._documents.close()
        return self.stats

    def _head(self) -> str:
        source = f'<p class="source">{escape(self.source)}</p>' if self.source else ""
        return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
                f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">'
                f'<meta name="viewport" content="width=device-width, initial-scale=1">'
                f'<title>{escape(self.title)}</title><style>{STYLE}</style></head><body>'
                f'<header><h1>{escape(self.title)}</h1>{source}</header>')


def _documents_header(count: int, expanded: int) -> str:
    legend = ('<p class="legend">Highlights: <span style="background:#ffb703">Q1</span>answers by question number '
              f'<span style="background:{markup.EVIDENCE_COLOR}">evidence Q1</span>the sentence an answer comes '
              'from <span style="background:#feca74">GPE</span>entities (displaCy colours)</p>')
    closed = f" The first {expanded} are open; open any other to render it." if count > expanded else ""
    return (f'<section id="documents"><h2>Documents</h2>{legend}<p>{count:,} documents.{closed} '
            f'<button id="expand-all" type="button">Open all</button> '
            f'<button id="collapse-all" type="button">Close all</button></p>')


def _json_text(markup_text: str) -> str:
    """`markup_text` as a JSON string that is safe inside <script>: neither "</" (so no
    "</script") nor "<!" (no "<!--") occurs; JSON.parse reads "<\\/" and "\\u003c!" back as
    "</" and "<!". Escaping only these keeps the markup's many tags at one byte each."""
    return json.dumps(markup_text, ensure_ascii=False).replace("</", "<\\/").replace("<!", "\\u003c!")


def write_report(docs: Iterable[Doc], path: str, evaluation: list[dict] | None = None, **options) -> RunStats:
    """Write the HTML report of `docs` to `path` (options: title, source, expanded)."""
    report = HtmlReport(path, **options)
    for doc in docs:
        report.add(doc)
    return report.close(evaluation)
