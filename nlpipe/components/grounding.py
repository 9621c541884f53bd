"""Tie a generated answer back to a span of the document it answers about."""

import re
from collections import Counter

from spacy.tokens import Doc, Span

from .questions import QuestionAnalysis

_LEAD_INS = re.compile(r"^(the )?(short )?answer( is)?\s*[:\-]?\s*", re.IGNORECASE)
_WORD = re.compile(r"\w+", re.UNICODE)
_LIST_JOINERS = {",", "and", "or", "&"}


def clean_answer(generated: str) -> str:
    """The answer phrase inside a model's reply: first line, no lead-in, quotes or final period."""
    lines = [line for line in generated.strip().splitlines() if line.strip()]
    text = _LEAD_INS.sub("", lines[0].strip()) if lines else ""
    for _ in range(2):  # '"Paris".' has its period outside the quotes, 'Paris.' inside none
        text = text.strip().rstrip(".,;:!").strip().strip("\"'“”‘’`")
    return text.strip()


def words_of(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def question_words(question: QuestionAnalysis) -> set[str]:
    """The question's words and lemmas: an answer that consists of them only restates it."""
    return set(words_of(question.text)) | question.focus_lemmas


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


def word_f1(candidate: list[str], answer: list[str]) -> float:
    common = sum((Counter(candidate) & Counter(answer)).values())
    if not common:
        return 0.0
    precision, recall = common / len(candidate), common / len(answer)
    return 2 * precision * recall / (precision + recall)


def candidate_spans(evidence: list[Span]) -> list[Span]:
    """Entities, lists of entities, noun chunks and numbers inside the evidence: the spans an
    answer usually is."""
    candidates = []
    for sent in evidence:
        candidates.extend(sent.ents)
        candidates.extend(entity_lists(sent))
        if sent.doc.has_annotation("DEP"):
            # Unlabelled: spaCy labels noun chunks "NP", and a candidate's label is its entity type.
            candidates.extend(Span(sent.doc, chunk.start, chunk.end) for chunk in sent.noun_chunks)
        # A number inside an entity keeps its type: "487" of "487 yards" is a QUANTITY too,
        # and "How many yards?" is answered "487".
        candidates.extend(Span(sent.doc, t.i, t.i + 1, label=t.ent_type_) for t in sent if t.like_num)
    return candidates


def entity_lists(sent: Span) -> list[Span]:
    """Runs of two or more entities joined by commas and 'and'/'or' ("Beyoncé and Bruno Mars",
    "Santa Clara, California"): "Who performed?" asks for them all. Joined by commas only,
    the entities must share a label ("May 21, 2013, NFL" is no list); with 'and'/'or' the labels
    may differ, since NER often gets one name of a list wrong. A run takes its last entity's label."""
    lists, run = [], []
    for ent in [*sent.ents, None]:
        between = [t.lower_ for t in sent.doc[run[-1].end:ent.start]] if run and ent is not None else []
        if between and set(between) <= _LIST_JOINERS and (
                ent.label_ == run[-1].label_ or set(between) & {"and", "or", "&"}):
            run.append(ent)
            continue
        if len(run) > 1:
            lists.append(Span(sent.doc, run[0].start, run[-1].end, label=run[-1].label_))
        run = [ent]
    return lists


def best_candidate(answer: str, evidence: list[Span], question: QuestionAnalysis) -> Span | None:
    """The candidate span that overlaps the answer's words most; question words do not count
    (a reply that restates the question matches every sentence), and entity labels the
    question expects break ties."""
    asked = question_words(question)
    answer_words = [w for w in words_of(answer) if w not in asked]
    if not answer_words:
        return None
    best, best_score = None, 0.0
    for span in candidate_spans(evidence):
        words = [w for w in words_of(span.text) if w not in asked]
        score = word_f1(words, answer_words) if words else 0.0
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
