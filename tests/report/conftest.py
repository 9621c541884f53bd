"""Answered Docs built by hand (a tokenizer, entities and answer records), for report tests."""

import base64
import json
import re
import zlib
from html.parser import HTMLParser

import pytest

import nlpipe.components  # noqa: F401  (registers the Doc and Span extensions)
from nlpipe.components.answers import set_answer_records

# The two examples, and two that would leave a mark on the page a browser test can see.
XSS = ('<script>alert(1)</script> "><img src=x onerror=alert(1)> '
       '<script>document.body.setAttribute("data-xss", "script")</script>'
       '"><img src=x onerror="document.body.setAttribute(\'data-xss\', \'img\')">')
PACKED = "application/octet-stream"  # the type of a packed page's script: data, which a browser never runs


def packed_pages(page: str) -> dict[int, list[list[str]]]:
    """The (summary line, body) pairs of each packed page of a report, unpacked as its script does."""
    found = re.findall(r'<script type="application/octet-stream" class="page" id="page-(\d+)">(.*?)</script>', page)
    return {int(number): json.loads(zlib.decompress(base64.b64decode(text))) for number, text in found}


class Elements(HTMLParser):
    """Every start tag of a page (or fragment) with its attributes and the document section
    (`<details class="doc" id=...>`) it is in."""

    def __init__(self, markup: str):
        super().__init__()
        self.tags, self._section = [], None
        self.feed(markup)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "details" and attrs.get("class") == "doc":
            self._section = attrs["id"]
        self.tags.append((tag, attrs, self._section))

    def handle_endtag(self, tag):
        if tag == "details":
            self._section = None

    def named(self, tag):
        return [attrs for name, attrs, _ in self.tags if name == tag]

    def labels(self) -> dict[str, list[str]]:
        """The highlight labels (Q1, evidence Q1, GPE...) of each document section."""
        found = {}
        for _, attrs, section in self.tags:
            if "data-label" in attrs:
                found.setdefault(section, []).append(attrs["data-label"])
        return found


class ShownText(HTMLParser):
    """The text a reader sees in a document's displaCy block: its tokens, not the labels of the
    highlights (inside <i>)."""

    def __init__(self, markup: str):
        super().__init__()
        self.text, self._in_spans, self._in_label = "", False, 0
        self.feed(markup)

    def handle_starttag(self, tag, attrs):
        self._in_spans |= ("class", "spans") in attrs
        self._in_label += tag == "i"

    def handle_endtag(self, tag):
        self._in_label -= tag == "i"
        self._in_spans &= tag != "div"

    def handle_data(self, data):
        if self._in_spans and not self._in_label:
            self.text += data


def answer_record(doc, index: int, text: str | None, sentence: int = 0, confidence: float | None = 0.5,
                  question: str | None = None, **extra) -> dict:
    """The record of question `index`: grounded on the first occurrence of `text` (None: a free reply)."""
    evidence = list(doc.sents)[sentence] if doc.has_annotation("SENT_START") else doc[:]
    start = doc.text.index(text) if text is not None and text in doc.text else None
    return {"question": question or f"Question {index + 1}?", "question_index": index, "text": text or "a reply",
            "start_char": start, "end_char": None if start is None else start + len(text),
            "grounded": start is not None, "confidence": confidence, "evidence": evidence.text,
            "evidence_start_char": evidence.start_char, "evidence_end_char": evidence.end_char,
            "logprob": -0.5, "generated": None if start is not None else "a reply", **extra}


@pytest.fixture()
def make_doc(blank_nlp):
    def make(doc_id: str, text: str, answers: list[tuple], entities: tuple = (), error: dict | None = None):
        """`answers`: (answer text or None, question text or None) per question, in order."""
        doc = blank_nlp(text)
        doc.ents = [doc.char_span(text.index(word), text.index(word) + len(word), label=label)
                    for word, label in entities]
        doc._.doc_id = doc_id
        set_answer_records(doc, [answer_record(doc, i, a, question=q) for i, (a, q) in enumerate(answers)])
        doc._.qa_error = error
        return doc
    return make
