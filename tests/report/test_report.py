"""The HTML report: summary, documents in displaCy's span style, evaluation, and untrusted text."""

import base64
import hashlib
import re

import pytest

from nlpipe.components.answers import set_answer_records
from nlpipe.errors import InputError
from nlpipe.report import HtmlReport, markup, write_report
from nlpipe.report.page import POLICY, SCRIPT
from nlpipe.report.stats import eval_stats

from .conftest import PACKED, XSS, Elements, ShownText, answer_record, packed_pages

TOWER = "The Eiffel Tower is in Paris. Gustave Eiffel designed it."


@pytest.fixture()
def docs(make_doc):
    return [make_doc("tower.txt", TOWER, [("Paris", "Where is it?"), ("Gustave Eiffel", "Who designed it?"),
                                          (None, "Why?")], entities=[("Paris", "GPE")]),
            make_doc("empty.txt", "", [], error={"type": "empty_document", "message": "the document has no text"}),
            make_doc("bowl.txt", "Super Bowl 50 was played at Levi's Stadium.", [("Levi's Stadium", None)])]


def test_summary_counts_and_histogram(docs, tmp_path):
    stats = write_report(docs, str(tmp_path / "report.html"))
    assert (stats.documents, stats.questions, stats.grounded, stats.failed_documents) == (3, 4, 3, 1)
    assert sum(stats.confidences) == 4 and stats.confidences[5] == 4
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert '<svg class="histogram"' in page and "75%</div>grounded" in page
    assert '<a href="#doc-1">#2 empty.txt</a> <code>empty_document</code>' in page


def test_every_grounded_answer_is_highlighted_with_its_evidence_and_entities(docs, tmp_path):
    write_report(docs, str(tmp_path / "report.html"))
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    labels = [label for section in Elements(page).labels().values() for label in section]
    assert labels.count("Q1") == 2 and labels.count("Q2") == 1  # tower's Paris and Eiffel, bowl's stadium
    assert "Q3" not in labels  # the free-form reply is in the table only
    assert {"evidence Q1 Q2 Q3", "GPE"} <= set(labels)
    assert page.count('<tr class="grounded"') == 3 and page.count('<tr class="free"') == 1
    assert '<p class="error"><b>error</b> <code>empty_document</code>' in page


def test_only_the_first_page_is_in_the_dom_and_every_page_is_packed(docs, tmp_path):
    write_report(docs, str(tmp_path / "report.html"), expanded=1, page_size=2)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert [(a["id"], "open" in a) for a in Elements(page).named("details")] == [("doc-0", True), ("doc-1", False)]
    assert page.count('class="body"') == 1
    assert '<option value="0">1–2</option><option value="1">3</option>' in page
    pages = packed_pages(page)
    assert [len(pages[0]), len(pages[1])] == [2, 1]
    [(_, tower_body), (error_line, error_body)], [(bowl_line, bowl_body)] = pages[0], pages[1]
    assert 'data-label="Q1"' in tower_body and "empty_document" in error_body and "empty.txt" in error_line
    assert 'data-label="Q1"' in bowl_body and "bowl.txt" in bowl_line and "#3" in bowl_line
    assert not re.search(r'class="page" id="page-\d+">[^<]*[^A-Za-z0-9+/=<]', page)  # base64 only


def test_a_short_report_has_one_page_and_no_page_selector(docs, tmp_path):
    write_report(docs, str(tmp_path / "report.html"), expanded=1)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert 'data-page-size="100"' in page and 'id="pages"' not in page
    assert len(Elements(page).named("details")) == 3 and list(packed_pages(page)) == [0]


def test_untrusted_text_never_becomes_markup(make_doc, tmp_path):
    doc = make_doc(XSS, f"{XSS} lives in Paris. {XSS}", [("Paris", XSS), (XSS, XSS), (None, XSS)],
                   entities=[("Paris", XSS)], error={"type": XSS, "message": XSS})
    doc._.qa_warning = {"type": XSS, "message": XSS}
    docs = [doc, make_doc(XSS, XSS, [(XSS, XSS)])]
    write_report(docs, str(tmp_path / "report.html"), title=XSS, source=XSS, expanded=1)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    unpacked = [text for pairs in packed_pages(page).values() for pair in pairs for text in pair]
    assert len(unpacked) == 4
    for markup in [page, *unpacked]:
        elements = Elements(markup)
        assert not elements.named("img")
        assert not any("onerror" in attrs for _, attrs, _ in elements.tags)
        # The page's own script, and the packed pages (data, never run): no other script element.
        assert [a for a in elements.named("script") if a.get("type") != PACKED] == ([{}] if markup is page else [])
    assert page.count("&lt;script&gt;") > 5 and "&quot;&gt;&lt;img src=x onerror=" in page


def test_only_the_report_script_may_run_and_nothing_is_fetched(docs, tmp_path):
    write_report(docs, str(tmp_path / "report.html"))
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in POLICY and "default-src 'none'" in POLICY
    assert f'content="{POLICY}"' in page and f"<script>{SCRIPT}</script>" in page
    assert not re.search(r'(src|href)="(https?:)?//', page)


def test_evaluation_scores_by_type_and_worst_answers(docs, tmp_path):
    predictions = [
        {"question": "Where is it?", "prediction": "Paris", "references": ["Paris"], "exact_match": 1.0, "f1": 1.0,
         "confidence": 0.9, "question_type": "where", "paragraph": 0},
        {"question": "Who designed it?", "prediction": "Paris", "references": ["Gustave Eiffel"],
         "exact_match": 0.0, "f1": 0.0, "confidence": 0.8, "question_type": "who", "paragraph": 0},
        {"question": "Who won?", "prediction": "", "references": ["Denver"], "exact_match": 0.0, "f1": 0.0,
         "confidence": None, "question_type": "who", "paragraph": 2},
    ]
    stats = eval_stats(predictions)
    assert (round(stats.exact_match, 1), round(stats.f1, 1)) == (33.3, 33.3)
    assert [(t.question_type, t.questions, t.f1) for t in stats.by_type] == [("who", 2, 0.0), ("where", 1, 100.0)]
    assert [p["question"] for p in stats.worst] == ["Who designed it?", "Who won?", "Where is it?"]
    report = HtmlReport(str(tmp_path / "eval.html"))
    for doc in docs:
        report.add(doc)
    report.close(predictions)
    page = (tmp_path / "eval.html").read_text(encoding="utf-8")
    assert '<section id="evaluation">' in page and '<a href="#doc-2">#3</a>' in page


def test_the_report_must_be_an_html_file(tmp_path):
    with pytest.raises(InputError, match="E095"):
        HtmlReport(str(tmp_path / "report.txt"))
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(InputError, match="E096: cannot write the report"):
        write_report([], str(tmp_path / "a-file" / "report.html"))


def test_the_document_text_is_shown_with_its_own_whitespace(make_doc):
    text = "The tower is in Paris, France.\n\nIt is 330 metres tall (1,083 ft)."
    doc = make_doc("tower.txt", text, [("Paris, France", "Where is it?"), ("330 metres", "How tall is it?")],
                   entities=[("Paris", "GPE"), ("330 metres", "QUANTITY")])
    _, body = markup.document(0, doc)
    assert ShownText(body).text == text  # not "Paris , France ." nor "( 1,083 ft )"
    assert "white-space:pre-wrap" in markup.markup_css()  # its line breaks too


def test_no_answer_is_named_with_its_probability_and_left_out_of_the_histogram(make_doc, tmp_path):
    doc = make_doc("tower.txt", TOWER, [("Paris", "Where is it?")])
    no_answer = {**answer_record(doc, 1, None, confidence=0.83, question="Who painted it?"), "text": "",
                 "generated": None, "answerable": False, "no_answer": 0.83}
    set_answer_records(doc, [{**doc._.answers[0], "no_answer": 0.07}, no_answer])
    stats = write_report([doc], str(tmp_path / "report.html"))
    assert (sum(stats.confidences), stats.confidences[5], stats.no_answer) == (1, 1, 1)  # Paris's 0.5 alone
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    [row] = re.findall(r'<tr class="free" data-question="Q2">.*?</tr>', page)
    assert "no-answer probability 0.83" in row and 'class="bar"' not in row and ">no answer<" in row
    # Every answer's chance that there is none has its column, the answered ones' too.
    assert "<th" in page and "no-answer chance</th>" in page and "<td>0.83</td>" in row
    [answered] = re.findall(r'<tr class="grounded" data-question="Q1">.*?</tr>', page)
    assert "<td>0.07</td>" in answered
    assert '<div class="big">1</div>no answer' in page
