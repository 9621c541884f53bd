"""One self-contained HTML file: summary, evaluation, then the documents, a page at a time.

Docs are rendered as they arrive, so memory stays flat however long the run: each page of
`page_size` documents is packed as soon as it is full into a temporary file (its summary lines
and displaCy bodies as JSON, deflated and base64-encoded: about a ninth of the markup), and the
summary, which needs every Doc, is written in front of them at the end. Only the first page is
in the page's DOM, its first `expanded` documents open; the page's script inflates a packed page
with the browser's own `DecompressionStream` when it is shown or one of its documents opened,
so a 10,000-document report parses about as fast as a 100-document one.
"""

import base64
import hashlib
import json
import os
import shutil
import tempfile
import zlib
from html import escape
from pathlib import Path
from typing import Iterable

from spacy.tokens import Doc

from ..errors import Errors, InputError
from . import markup
from .stats import RunStats, eval_stats

EXPANDED = 20  # documents open (and rendered into the DOM) when the report opens
PAGE_SIZE = 100  # documents a page of the report shows, and a packed page holds

# Shows a page (the page selector, or a link to #doc-N on another page) and renders a document's
# body when it is opened. Both read the page's packed script, inflated without eval or network;
# the markup they insert was escaped when it was written (markup.py), as the first page's was.
SCRIPT = """
(function () {
  var documents = document.getElementById("documents"), list = document.getElementById("page");
  var size = Number(documents.dataset.pageSize), count = Number(documents.dataset.count);
  var pager = document.getElementById("pages"), shown = 0, loaded = {};
  function load(page) {
    if (!loaded[page]) {
      var packed = atob(document.getElementById("page-" + page).textContent);
      var bytes = Uint8Array.from(packed, function (c) { return c.charCodeAt(0); });
      loaded = {};  // one page's markup held at a time
      loaded[page] = new Response(new Response(bytes).body.pipeThrough(new DecompressionStream("deflate"))).json();
    }
    return loaded[page];
  }
  function fill(section) {
    var index = Number(section.id.slice(4));
    if (section.querySelector(".body")) return Promise.resolve();
    return load(Math.floor(index / size)).then(function (docs) {
      if (section.querySelector(".body")) return;
      var body = document.createElement("div");
      body.className = "body";
      body.innerHTML = docs[index % size][1];
      section.append(body);
    });
  }
  function show(page) {
    if (page === shown) return Promise.resolve();
    return load(page).then(function (docs) {
      list.innerHTML = docs.map(function (doc, k) {
        return '<details class="doc" id="doc-' + (page * size + k) + '">' + doc[0] + "</details>";
      }).join("");
      shown = page;
      pager.value = String(page);
    });
  }
  document.addEventListener("toggle", function (event) {
    if (event.target.classList && event.target.classList.contains("doc") && event.target.open) fill(event.target);
  }, true);
  function openTarget() {
    var match = /^#doc-(\\d+)$/.exec(location.hash), index = match ? Number(match[1]) : count;
    if (index >= count) return;
    show(Math.floor(index / size)).then(function () {
      var section = document.getElementById("doc-" + index);
      return fill(section).then(function () {
        section.open = true;
        section.scrollIntoView();
      });
    });
  }
  window.addEventListener("hashchange", openTarget);
  openTarget();
  function turn(page) {
    if (page >= 0 && page * size < count) show(page).then(function () { documents.scrollIntoView(); });
  }
  if (pager) {
    pager.addEventListener("change", function () { turn(Number(pager.value)); });
    document.getElementById("previous").addEventListener("click", function () { turn(shown - 1); });
    document.getElementById("next").addEventListener("click", function () { turn(shown + 1); });
  }
  document.getElementById("expand-all").addEventListener("click", function () {
    list.querySelectorAll("details.doc").forEach(function (section) { section.open = true; });
  });
  document.getElementById("collapse-all").addEventListener("click", function () {
    list.querySelectorAll("details.doc").forEach(function (section) { section.open = false; });
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
.bar>span{display:block;height:100%;background:#fb8500;border-radius:3px}.no-answer{color:#777;font-style:italic}
tr.free td:nth-child(3){font-style:italic}
.pager{margin:.6em 0;color:#555}
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
    `page_size`: documents a page shows (at least `expanded`).
    """

    def __init__(self, path: str, title: str = "nlpipe report", source: str = "", expanded: int = EXPANDED,
                 page_size: int = PAGE_SIZE):
        self.path = check_report_path(path)
        self.title, self.source, self.expanded = title, source, expanded
        self.page_size = max(page_size, expanded, 1)
        self.stats = RunStats()
        self._first_page: list[str] = []  # its sections, as the DOM holds them when the report opens
        self._page: list[list[str]] = []  # (summary line, body) of each document of the page being filled
        self._packed = tempfile.TemporaryFile("w+", encoding="ascii")

    def add(self, doc: Doc) -> None:
        index = self.stats.documents
        self.stats.add(index, doc)
        line, body = markup.document(index, doc)
        if index < self.expanded:
            self._first_page.append(f'<details class="doc" id="doc-{index}" open>{line}<div class="body">{body}'
                                    f'</div></details>\n')
        elif index < self.page_size:
            self._first_page.append(f'<details class="doc" id="doc-{index}">{line}</details>\n')
        self._page.append([line, body])
        if len(self._page) == self.page_size:
            self._pack_page()

    def _pack_page(self) -> None:
        number = (self.stats.documents - 1) // self.page_size
        self._packed.write(f'<script type="application/octet-stream" class="page" id="page-{number}">'
                           f'{pack(self._page)}</script>\n')
        self._page = []

    def close(self, evaluation: list[dict] | None = None) -> RunStats:
        temporary = self.path.with_name(f".{self.path.name}.nlpipe-tmp")
        try:
            if self._page:
                self._pack_page()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(temporary, "w", encoding="utf-8", errors="replace") as out:
                out.write(self._head())
                out.write(markup.summary(self.stats))
                if evaluation is not None:
                    out.write(markup.evaluation(eval_stats(evaluation)))
                out.write(_documents_header(self.stats.documents, self.expanded, self.page_size))
                out.write(f'<div id="page">{"".join(self._first_page)}</div>')
                self._packed.seek(0)
                shutil.copyfileobj(self._packed, out)
                out.write(f"</section><script>{SCRIPT}</script></body></html>\n")
            os.replace(temporary, self.path)
        except OSError as err:
            if temporary.exists():
                temporary.unlink()
            raise InputError(Errors.E096.format(path=self.path, reason=err.strerror or err)) from None
        finally:
            self._packed.close()
        return self.stats

    def _head(self) -> str:
        source = f'<p class="source">{escape(self.source)}</p>' if self.source else ""
        return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
                f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">'
                f'<meta name="viewport" content="width=device-width, initial-scale=1">'
                f'<title>{escape(self.title)}</title><style>{STYLE}</style></head><body>'
                f'<header><h1>{escape(self.title)}</h1>{source}</header>')


def _documents_header(count: int, expanded: int, page_size: int) -> str:
    legend = ('<p class="legend">Highlights: <span style="background:#ffb703">Q1</span>answers by question number '
              f'<span style="background:{markup.EVIDENCE_COLOR}">evidence Q1</span>the sentence an answer comes '
              'from <span style="background:#feca74">GPE</span>entities (displaCy colours)</p>')
    closed = f" The first {expanded} are open; open any other to render it." if count > expanded else ""
    pager = ""
    if count > page_size:
        pages = "".join(f'<option value="{k}">{_documents_range(k * page_size, min(count, (k + 1) * page_size))}'
                        '</option>' for k in range(-(-count // page_size)))
        pager = (f'<nav class="pager">{page_size} documents a page: <button id="previous" type="button">previous'
                 f'</button> <select id="pages" aria-label="documents shown">{pages}</select> '
                 f'<button id="next" type="button">next</button></nav>')
    return (f'<section id="documents" data-count="{count}" data-page-size="{page_size}"><h2>Documents</h2>{legend}'
            f'<p>{count:,} documents.{closed} <button id="expand-all" type="button">Open all</button> '
            f'<button id="collapse-all" type="button">Close all</button></p>{pager}')


def _documents_range(start: int, end: int) -> str:
    return f"{start + 1:,}" if end == start + 1 else f"{start + 1:,}–{end:,}"


def pack(documents: list[list[str]]) -> str:
    """`documents` ((summary line, body) pairs) as the page's script unpacks them: JSON, deflated
    (zlib, what `DecompressionStream("deflate")` reads), in base64, which holds no "<"."""
    data = json.dumps(documents, ensure_ascii=False, separators=(",", ":")).encode("utf-8", errors="replace")
    return base64.b64encode(zlib.compress(data, 9)).decode("ascii")


def write_report(docs: Iterable[Doc], path: str, evaluation: list[dict] | None = None, **options) -> RunStats:
    """Write the HTML report of `docs` to `path` (options: title, source, expanded, page_size)."""
    report = HtmlReport(path, **options)
    for doc in docs:
        report.add(doc)
    return report.close(evaluation)
