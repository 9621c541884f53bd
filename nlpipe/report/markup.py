"""HTML for the parts of a report: one document (displaCy's span style and an answer table), the
summary, the evaluation.

Everything from a Doc or a record is untrusted. displaCy escapes token texts but not span
labels, so every label is escaped here before displaCy sees it, and every other value goes
through `html.escape` (quotes included) on its way into text or an attribute.
"""

from html import escape

from spacy.displacy.render import DEFAULT_LABEL_COLORS, SpanRenderer
from spacy.tokens import Doc

from .stats import HISTOGRAM_BINS, EvalStats, RunStats, doc_errors

# displaCy's span templates, made compact: a highlighted token costs ~50 bytes instead of ~700.
# Its inline styles become the report's CSS (`markup_css`): `{bg}` is a class naming the colour
# (the `colors` option maps labels to class names), `{top_offset}` and `{total_height}` name
# classes for the slot and the height. The start of each span carries its label in data-label,
# where tests and readers can find it; the space after a token separates it from the next, as
# displaCy's own unhighlighted tokens.
TEMPLATES = {
    "span": '<b class="h{total_height}">{text}{span_slices}{span_starts}</b> ',
    "slice": '<i class="{bg} o{top_offset}"></i>',
    "start": '<i class="{bg} o{top_offset} st" data-label="{label}"><span class="{bg}">{label}{kb_link}</span></i>',
}
ANSWER_COLORS = ("#ffb703", "#fb8500", "#8ecae6", "#f4a3c0", "#b5e48c", "#cdb4db", "#ffd6a5", "#a0c4ff")
EVIDENCE_COLOR = "#dfe7fd"
# Classes of the colours: answers by question number, evidence, displaCy's entity colours.
COLOR_CLASSES = {**{f"q{k}": color for k, color in enumerate(ANSWER_COLORS)}, "ev": EVIDENCE_COLOR,
                 **{f"e-{label.lower()}": color for label, color in DEFAULT_LABEL_COLORS.items()}}
ENTITY_CLASSES = {label: f"e-{label.lower()}" for label in DEFAULT_LABEL_COLORS}
SLOTS = 24  # stacked spans with their own slot and height class; displaCy's geometry, in px


def markup_css() -> str:
    """The CSS the templates above need (displaCy's inline styles, by class)."""
    colors = "".join(f".{name}{{background:{color}}}" for name, color in COLOR_CLASSES.items())
    slots = "".join(f".o{40 + 17 * k}{{top:{40 + 17 * k}px}}.h{60 + 17 * k}{{height:{60 + 17 * k}px}}"
                    for k in range(SLOTS))
    return (".spans{white-space:pre-wrap}.spans b{font-weight:bold;display:inline-block;position:relative}"
            ".spans i{height:4px;left:-1px;width:calc(100% + 2px);position:absolute}"
            ":where(.spans i,.spans i>span){background:#ddd}"
            ".spans i.st{border-top-left-radius:3px;border-bottom-left-radius:3px}"
            ".spans i>span{z-index:10;color:#000;top:-.5em;padding:2px 3px;position:absolute;font-size:.6em;"
            "font-style:normal;font-weight:bold;line-height:1;border-radius:3px;white-space:nowrap}"
            + colors + slots)


def document(index: int, doc: Doc) -> tuple[str, str]:
    """(the `<summary>` line, the body) of the report's section for one Doc."""
    return _summary_line(index, doc), _body(doc)


def _summary_line(index: int, doc: Doc) -> str:
    answers = doc._.answers
    grounded = sum(a["start_char"] is not None for a in answers)
    badges = [f'<span class="badge">{len(answers)} questions · {grounded} grounded</span>'] if answers else []
    errors = doc_errors(doc)
    if errors:
        badges.append(f'<span class="badge bad">error: {escape(str(errors[0].get("type", "error")))}</span>')
    if doc._.qa_warning:
        badges.append('<span class="badge warn">warning</span>')
    return (f'<summary><span class="num">#{index + 1}</span> <span class="doc-id">{escape(doc._.doc_id or "")}'
            f'</span> {" ".join(badges)}</summary>')


def _body(doc: Doc) -> str:
    parts = []
    if doc._.qa_error:
        parts.append(_problem("error", doc._.qa_error))
    if doc._.qa_warning:
        parts.append(_problem("warning", doc._.qa_warning))
    if len(doc):
        parts.append(_displacy(doc))
    if doc._.answers:
        parts.append(_answer_table(doc._.answers))
    return "".join(parts)


def _problem(kind: str, problem: dict) -> str:
    return (f'<p class="{kind}"><b>{kind}</b> <code>{escape(str(problem.get("type", "")))}</code>: '
            f'{escape(str(problem.get("message", "")))}</p>')


def _displacy(doc: Doc) -> str:
    """The text in displaCy's span style: answers (Q1, ...), their evidence sentences, entities."""
    spans, colors = [], {}
    evidence: dict[tuple[int, int], list[str]] = {}
    for answer in doc._.answers:
        number = f"Q{answer['question_index'] + 1}"
        if answer["start_char"] is not None:
            spans.append(_span(doc, answer["start_char"], answer["end_char"], number))
            colors[number] = f"q{answer['question_index'] % len(ANSWER_COLORS)}"
        if answer.get("evidence_start_char") is not None:
            evidence.setdefault((answer["evidence_start_char"], answer["evidence_end_char"]), []).append(number)
    for (start, end), numbers in evidence.items():  # one mark per sentence, naming every question it answers
        label = f"evidence {' '.join(numbers)}"
        spans.append(_span(doc, start, end, label))
        colors[escape(label).upper()] = "ev"
    spans += [_span(doc, e.start_char, e.end_char, e.label_) for e in doc.ents]
    parsed = {"text": doc.text, "tokens": [t.text for t in doc], "spans": [s for s in spans if s is not None]}
    # Every colour is a class name: displaCy's own colours would land in a class attribute.
    renderer = DocSpans({"template": TEMPLATES, "colors": {**ENTITY_CLASSES, **colors}},
                        [t.whitespace_ for t in doc])
    return renderer.render([parsed], page=False, minify=False)


class DocSpans(SpanRenderer):
    """displaCy's span renderer (what `displacy.render(style="span")` uses), with the document's
    own whitespace after each token where displaCy puts one space after every token ("Paris ,
    France ."), so the text reads as written; `.spans` keeps its line breaks (pre-wrap)."""

    def __init__(self, options: dict, whitespace: list[str]):
        super().__init__(options)
        self.whitespace = whitespace

    def _render_markup(self, per_token_info: list[dict]) -> str:
        # Each token's markup, as displaCy renders it, ends in that one space: swap in the token's own.
        return "".join(super(DocSpans, self)._render_markup([token])[:-1] + space
                       for token, space in zip(per_token_info, self.whitespace))


def _span(doc: Doc, start: int, end: int, label: str) -> dict | None:
    span = doc.char_span(start, end, alignment_mode="expand")
    if span is None or not len(span):
        return None
    return {"start_token": span.start, "end_token": span.end, "label": escape(label)}


def _answer_table(answers: list[dict]) -> str:
    rows = "".join(_answer_row(a) for a in answers)
    return ('<table class="answers"><thead><tr><th>#</th><th>question</th><th>answer</th><th>confidence</th>'
            '<th title="the chance that the document does not answer the question">no-answer chance</th>'
            f'<th>log-prob</th><th>grounded</th></tr></thead><tbody>{rows}</tbody></table>')


def _answer_row(answer: dict) -> str:
    number = answer["question_index"] + 1
    if answer.get("error"):
        reply = f'<span class="bad">{escape(str(answer["error"].get("message", "error")))}</span>'
    else:
        reply = escape(answer.get("text") or "") or '<span class="muted">no answer</span>'
    grounded = answer["start_char"] is not None
    where = f'characters {answer["start_char"]}–{answer["end_char"]}' if grounded else "generated, not a span"
    return (f'<tr class="{"grounded" if grounded else "free"}" data-question="Q{number}"><td>Q{number}</td>'
            f'<td>{escape(answer.get("question") or "")}</td><td title="{escape(where)}">{reply}</td>'
            f'<td>{_confidence(answer)}</td><td>{_number(answer.get("no_answer"), 2)}</td>'
            f'<td>{_number(answer.get("logprob"), 3)}</td>'
            f'<td>{"yes" if grounded else "no"}</td></tr>')


def _confidence(record: dict) -> str:
    """A bar for an answer's confidence. A "no answer"'s confidence is the probability that the
    document does not say: named as that, with no bar to be read as the confidence of an answer."""
    if record.get("answerable") is False and record.get("confidence") is not None:
        return f'<span class="no-answer">no-answer probability {record["confidence"]:.2f}</span>'
    return _bar(record.get("confidence"))


def _bar(value: float | None) -> str:
    if value is None:
        return '<span class="muted">–</span>'
    return (f'<span class="bar"><span style="width:{100 * value:.0f}%"></span></span> '
            f'<span class="value">{value:.2f}</span>')


def _number(value, digits: int) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else '<span class="muted">–</span>'


def summary(stats: RunStats) -> str:
    cards = [("documents", f"{stats.documents:,}"), ("questions", f"{stats.questions:,}"),
             ("grounded", f"{100 * stats.grounded_share:.0f}%"), ("no answer", f"{stats.no_answer:,}"),
             ("documents with errors", f"{stats.failed_documents:,}"),
             ("failed questions", f"{stats.failed_questions:,}"), ("warnings", f"{stats.warnings:,}")]
    tiles = "".join(f'<div class="card"><div class="big">{value}</div>{label}</div>' for label, value in cards)
    return (f'<section id="summary"><h2>Summary</h2><div class="cards">{tiles}</div>'
            f'<h3>Confidence of the answers (not of the "no answer"s)</h3>{histogram(stats.confidences)}{_failure_list(stats)}</section>')


def histogram(counts: list[int]) -> str:
    """An inline SVG bar chart of answers per confidence bin."""
    width, height, bar = 420, 120, 420 // HISTOGRAM_BINS
    top = max(counts) or 1
    bars = []
    for k, count in enumerate(counts):
        h = round((height - 30) * count / top)
        x, y = k * bar, height - 18 - h
        bars.append(f'<rect x="{x + 2}" y="{y}" width="{bar - 4}" height="{h}" fill="#fb8500">'
                    f'<title>{k / HISTOGRAM_BINS:.1f}–{(k + 1) / HISTOGRAM_BINS:.1f}: {count}</title></rect>'
                    f'<text x="{x + bar / 2}" y="{y - 3}" text-anchor="middle">{count}</text>'
                    f'<text x="{x + bar / 2}" y="{height - 4}" text-anchor="middle">{k / HISTOGRAM_BINS:.1f}</text>')
    return (f'<svg class="histogram" role="img" aria-label="answers per confidence bin" '
            f'viewBox="0 0 {width} {height}" width="{width}" height="{height}">{"".join(bars)}</svg>')


def _failure_list(stats: RunStats) -> str:
    if not stats.failures:
        return ""
    items = "".join(f'<li><a href="#doc-{index}">#{index + 1} {escape(doc_id)}</a> <code>{escape(kind)}</code></li>'
                    for index, doc_id, kind in stats.failures)
    more = stats.failed_documents - len(stats.failures)
    tail = f"<li>… and {more:,} more</li>" if more > 0 else ""
    return f'<h3>Documents with errors</h3><ul class="failures">{items}{tail}</ul>'


def evaluation(stats: EvalStats) -> str:
    by_type = "".join(f"<tr><td>{escape(t.question_type)}</td><td>{t.questions}</td><td>{t.exact_match:.1f}</td>"
                      f"<td>{t.f1:.1f}</td></tr>" for t in stats.by_type)
    worst = "".join(_worst_row(p) for p in stats.worst)
    return (f'<section id="evaluation"><h2>Evaluation</h2><div class="cards">'
            f'<div class="card"><div class="big">{stats.exact_match:.1f}</div>exact match</div>'
            f'<div class="card"><div class="big">{stats.f1:.1f}</div>F1</div>'
            f'<div class="card"><div class="big">{stats.questions:,}</div>questions</div></div>'
            f'<h3>By question type</h3><table class="scores"><thead><tr><th>type</th><th>questions</th>'
            f'<th>exact match</th><th>F1</th></tr></thead><tbody>{by_type}</tbody></table>'
            f'<h3>Worst answers</h3><table class="worst"><thead><tr><th>question</th><th>answer</th>'
            f'<th>references</th><th>F1</th><th>confidence</th><th>document</th></tr></thead>'
            f'<tbody>{worst}</tbody></table></section>')


def _worst_row(prediction: dict) -> str:
    references = " | ".join(escape(r) for r in prediction.get("references") or [])
    paragraph = prediction.get("paragraph")
    link = f'<a href="#doc-{paragraph}">#{paragraph + 1}</a>' if isinstance(paragraph, int) else ""
    return (f'<tr><td>{escape(prediction.get("question") or "")}</td>'
            f'<td>{escape(prediction.get("prediction") or "") or "<span class=muted>(none)</span>"}</td>'
            f'<td>{references}</td><td>{prediction["f1"]:.2f}</td><td>{_confidence(prediction)}</td>'
            f'<td>{link}</td></tr>')
