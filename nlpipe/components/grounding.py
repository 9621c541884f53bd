"""Tie a generated answer back to a span of the document it answers about."""

import re
from collections import Counter

from spacy.tokens import Doc, Span

from .questions import QuestionAnalysis

_LEAD_INS = re.compile(r"^(the )?(short )?answer( is)?\s*[:\-]?\s*", re.IGNORECASE)
_WORD = re.compile(r"\w+", re.UNICODE)


def clean_answer(generated: str) -> str:
    """The answer phrase inside a model's reply: first line, no lead-in, quotes or final period."""
    lines = [line for line in generated.strip().splitlines() if line.strip()]
    text = _LEAD_INS.sub("", lines[0].strip()) if lines else ""
    return text.strip().strip("\"'“”‘’`").rstrip(".,;:!").strip()


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


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


def _f1(candidate: list[str], answer: list[str]) -> float:
    common = sum((Counter(candidate) & Counter(answer)).values())
    if not common:
        return 0.0
    precision, recall = common / len(candidate), common / len(answer)
    return 2 * precision * recall / (precision + recall)


def candidate_spans(evidence: list[Span]) -> list[Span]:
    """Entities, noun chunks and numbers inside the evidence: the spans an answer usually is."""
    candidates = []
    for sent in evidence:
        candidates.extend(sent.ents)
        if sent.doc.has_annotation("DEP"):
            candidates.extend(chunk for chunk in sent.noun_chunks)
        candidates.extend(sent.doc[t.i:t.i + 1] for t in sent if t.like_num)
    return candidates


def best_candidate(answer: str, evidence: list[Span], question: QuestionAnalysis) -> Span | None:
    """The candidate span that overlaps the answer's words most (question words do not count,
    since a reply that restates the question matches every sentence); entity labels the
    question expects break ties."""
    answer_words = _words(answer)
    without_question = [w for w in answer_words if w not in question.focus_lemmas
                        and w not in _words(question.text)]
    answer_words = without_question or answer_words
    best, best_score = None, 0.0
    for span in candidate_spans(evidence):
        score = _f1(_words(span.text), answer_words)
        if score and span.label_ in question.expected_labels:
            score += 0.25
        if score > best_score:
            best, best_score = span, score
    return best


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


def ground(reply: str, core: str, doc: Doc, evidence: list[Span], question: QuestionAnalysis) -> tuple[int, int] | None:
    """(start_char, end_char) of the answer in `doc`, or None when no span fits.

    `reply` is the model's cleaned reply and `core` its answer-bearing part (see answer_core).
    """
    for phrase in dict.fromkeys((reply, core)):
        found = find_phrase(phrase, doc, evidence) if phrase else None
        if found:
            return found
    span = best_candidate(core or reply, evidence, question)
    return (span.start_char, span.end_char) if span is not None else None
