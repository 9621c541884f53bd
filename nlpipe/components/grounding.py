"""Tie a generated answer back to a span of the document it answers about."""

import re

from spacy.tokens import Doc, Span

from .questions import QuestionAnalysis, question_words, words_of
from .selection import best_candidate

_LEAD_INS = re.compile(r"^(the )?(short )?answer( is)?\s*[:\-]?\s*", re.IGNORECASE)


def clean_answer(generated: str) -> str:
    """The answer phrase inside a model's reply: first line, no lead-in, quotes or final period."""
    lines = [line for line in generated.strip().splitlines() if line.strip()]
    text = _LEAD_INS.sub("", lines[0].strip()) if lines else ""
    for _ in range(2):  # '"Paris".' has its period outside the quotes, 'Paris.' inside none
        text = text.strip().rstrip(".,;:!").strip().strip("\"'“”‘’`")
    return text.strip()


def find_phrase(phrase: str, doc: Doc, within: list[Span]) -> tuple[int, int] | None:
    """Character offsets of `phrase` in the doc, matched case-insensitively on word
    boundaries with any whitespace between words; the evidence is searched first."""
    words = phrase.split()
    if not words:
        return None
    pattern = r"\s+".join(re.escape(w) for w in words)
    if phrase[0].isalnum():
        pattern = r"(?<!\w)" + pattern
    if phrase[-1].isalnum():
        pattern += r"(?!\w)"
    regex = re.compile(pattern, re.IGNORECASE)
    for region in [*within, doc[:]]:
        match = regex.search(doc.text, region.start_char, region.end_char)
        if match:
            return match.start(), match.end()
    return None


def answer_core(reply: Doc) -> str:
    """The part of a full-sentence reply that carries the answer: "The tower is located in
    Paris" → "in Paris". Small models restate the question's subject; dropping the subject
    and the main verb keeps that restatement from matching the wrong span."""
    root = next((t for t in reply if t.dep_ == "ROOT"), None)
    if root is None or root.pos_ not in ("VERB", "AUX"):
        return reply.text
    subjects = [c for c in root.children if c.dep_ in ("nsubj", "nsubjpass", "expl")]
    if not subjects:
        return reply.text
    dropped = {root.i}
    for child in root.children:
        if child.dep_ in ("nsubj", "nsubjpass", "expl"):
            dropped.update(t.i for t in child.subtree)
        elif child.dep_ in ("aux", "auxpass", "neg", "punct"):
            dropped.add(child.i)
    kept = [t.text_with_ws for t in reply if t.i not in dropped]
    return "".join(kept).strip() or reply.text


def _narrow(doc: Doc, start: int, end: int, question: QuestionAnalysis) -> tuple[int, int]:
    """Shrink a matched phrase to the answer inside it: in a phrase of several words, the
    first entity of an expected type that the question does not already name; else the
    phrase without leading prepositions. Short phrases are left whole, since NER may split
    a name ('Denver' GPE + 'Broncos') that the reply got right."""
    span = doc.char_span(start, end, alignment_mode="expand")
    if span is None:
        return start, end
    named = {e.lower() for e in question.entities} | {question.text.lower()}
    if len(span) > 3:
        for ent in span.ents:
            if ent.label_ in question.expected_labels and not any(ent.text.lower() in n for n in named):
                return ent.start_char, ent.end_char
    first = span.start
    while first < span.end - 1 and doc[first].pos_ in ("ADP", "SCONJ"):
        first += 1
    return doc[first].idx, end


def ground(reply: str, core: str, doc: Doc, evidence: list[Span], question: QuestionAnalysis) -> tuple[int, int] | None:
    """(start_char, end_char) of the answer in `doc`, or None when no span fits.

    `reply` is the model's cleaned reply and `core` its answer-bearing part (see answer_core).
    A phrase made only of the question's own words is never taken for the answer.
    """
    asked = question_words(question)
    for phrase in dict.fromkeys((reply, core)):
        if not phrase or set(words_of(phrase)) <= asked:
            continue
        found = find_phrase(phrase, doc, evidence)
        if found:
            return _narrow(doc, *found, question)
    span = best_candidate(core or reply, evidence, question)
    return (span.start_char, span.end_char) if span is not None else None
