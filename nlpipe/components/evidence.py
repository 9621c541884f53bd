"""Pick the sentences of a Doc that best support answering a question, within a token budget."""

import math
from dataclasses import dataclass
from typing import Callable

# Constrained types from pydantic's v1 API: the one confection checks config values with.
from pydantic.v1 import PositiveInt
from spacy.tokens import Doc, Span
from spacy.util import registry

from .questions import QuestionAnalysis, is_content, lemma_of


@dataclass
class Unit:
    """A piece of evidence: a sentence, or a slice of a sentence too long for the budget."""

    span: Span
    n_tokens: int  # in the LLM's tokenizer
    lemmas: frozenset
    labels: frozenset
    lower_text: str


def _sentences(doc: Doc) -> list[Span]:
    if doc.has_annotation("SENT_START"):
        return list(doc.sents)
    return [doc[:]] if len(doc) else []  # no parser/senter in the pipeline: one unit


def units_of(span: Span, count_tokens: Callable[[str], int], max_tokens: int) -> list[Span]:
    """`span`, cut into consecutive windows that each fit the budget when it alone exceeds it."""
    if len(span) < 2 or count_tokens(span.text) <= max_tokens:
        return [span]
    doc, windows, start, used = span.doc, [], span.start, 0
    for token in span:
        n_tokens = count_tokens(token.text_with_ws)
        if used + n_tokens > max_tokens and token.i > start:
            windows.append(doc[start:token.i])
            start, used = token.i, 0
        used += n_tokens
    windows.append(doc[start:span.end])
    return windows


class EvidenceIndex:
    """A Doc's evidence units with what ranking needs, built once per Doc and reused per question."""

    def __init__(self, doc: Doc, count_tokens: Callable[[str], int], max_tokens: int):
        spans = [unit for sent in _sentences(doc) for unit in units_of(sent, count_tokens, max_tokens)]
        self.units = [Unit(span=s, n_tokens=count_tokens(s.text),
                           lemmas=frozenset(lemma_of(t) for t in s if is_content(t)),
                           labels=frozenset(e.label_ for e in s.ents), lower_text=s.text.lower())
                      for s in spans]
        self.by_bounds = {(u.span.start, u.span.end): u for u in self.units}
        n = len(self.units)
        document_frequency = {}
        for unit in self.units:
            for lemma in unit.lemmas:
                document_frequency[lemma] = document_frequency.get(lemma, 0) + 1
        # Smoothed idf: a lemma in every sentence still counts a little, a rare one a lot.
        self.idf = {lemma: math.log((n + 1) / (df + 0.5)) for lemma, df in document_frequency.items()}


class EvidenceSelector:
    def __init__(self, max_sentences: int = 3, max_tokens: int = 384, entity_weight: float = 1.5,
                 label_weight: float = 0.5):
        self.max_sentences = max_sentences
        self.max_tokens = max_tokens
        self.entity_weight = entity_weight
        self.label_weight = label_weight

    def index(self, doc: Doc, count_tokens: Callable[[str], int], room: int | None = None) -> EvidenceIndex:
        """`room`: the most evidence tokens the prompt can hold (what the model's context window
        leaves); a sentence longer than the budget is cut into windows that fit."""
        return EvidenceIndex(doc, count_tokens, self.budget(room))

    def budget(self, room: int | None) -> int:
        """Evidence tokens allowed: `max_tokens`, or less when the prompt has less room."""
        return self.max_tokens if room is None else max(1, min(self.max_tokens, room))

    def score(self, unit: Unit, question: QuestionAnalysis, idf: dict) -> float:
        lemma_score = sum(idf[lemma] for lemma in question.focus_lemmas & unit.lemmas)
        entity_score = self.entity_weight * sum(e.lower() in unit.lower_text for e in question.entities)
        label_score = self.label_weight * bool(unit.labels & set(question.expected_labels))
        return lemma_score + entity_score + label_score

    def rank(self, index: EvidenceIndex, question: QuestionAnalysis) -> list[tuple[Span, float]]:
        """Every unit with its score, best first (ties in document order)."""
        scored = [(self.score(unit, question, index.idf), i) for i, unit in enumerate(index.units)]
        return [(index.units[i].span, score) for score, i in sorted(scored, key=lambda pair: (-pair[0], pair[1]))]

    def select(self, index: EvidenceIndex, question: QuestionAnalysis, room: int | None = None) -> list[Span]:
        """The best units for `question` that fit the budget, in document order."""
        return self.fit(index, self.rank(index, question), room)

    def fit(self, index: EvidenceIndex, ranked: list[tuple[Span, float]], room: int | None = None) -> list[Span]:
        """The first of the `ranked` units that fit the budget, in document order."""
        budget = self.budget(room)
        chosen, used = [], 0
        for span, _ in ranked:
            if len(chosen) == self.max_sentences:
                break
            n_tokens = index.by_bounds[(span.start, span.end)].n_tokens
            if used + n_tokens <= budget:
                chosen.append(span)
                used += n_tokens
        return sorted(chosen, key=lambda span: span.start)

    def shared(self, index: EvidenceIndex, evidences: list[list[Span]], room: int | None = None) -> list[Span] | None:
        """One context for all of a document's questions: the union of their evidence, in
        document order, when it fits the budget (then the model computes it once); else None."""
        units = index.by_bounds
        chosen = sorted({(s.start, s.end) for evidence in evidences for s in evidence})
        if sum(units[key].n_tokens for key in chosen) > self.budget(room):
            return None
        return [units[key].span for key in chosen]


@registry.misc("nlpipe.EvidenceSelector.v1")
def make_evidence_selector(max_sentences: PositiveInt = 3, max_tokens: PositiveInt = 384, entity_weight: float = 1.5,
                           label_weight: float = 0.5) -> EvidenceSelector:
    """`max_tokens` bounds the evidence in LLM tokens, so long documents give short prompts."""
    return EvidenceSelector(max_sentences, max_tokens, entity_weight, label_weight)
