"""Choose the answer span among typed candidates of the evidence.

Each candidate (an entity, noun chunk or number; the span the reply matched, if any) is
scored by the model's own likelihood of giving it as the answer (its total log-probability
over the square root of its length: neither favours one-token answers as the total does, nor
long ones as the mean does), plus its agreement with the generated reply and with the entity
type the question expects. A softmax over those scores gives the confidence of the chosen
span. The default weights were tuned on the SQuAD v1.1 *train* part in ../shared/data.
"""

import math
from dataclasses import dataclass

from spacy.tokens import Doc, Span
from spacy.util import registry

from .grounding import candidate_spans, question_words, word_f1, words_of
from .questions import QuestionAnalysis

# Question types whose answer is rarely a span of the text: their reply is kept as generated.
FREE_FORM_TYPES = ("why", "how", "yes/no")


@dataclass
class Choice:
    offsets: tuple[int, int] | None
    confidence: float | None


class SpanSelector:
    def __init__(self, max_candidates: int = 16, likelihood_weight: float = 0.5, reply_weight: float = 1.0,
                 overlap_weight: float = 2.0, label_weight: float = 1.0):
        self.max_candidates = max_candidates
        self.likelihood_weight = likelihood_weight
        self.reply_weight = reply_weight
        self.overlap_weight = overlap_weight
        self.label_weight = label_weight

    def candidates(self, doc: Doc, evidence: list[Span], question: QuestionAnalysis,
                   reply_offsets: tuple[int, int] | None) -> list[Span]:
        """Spans worth scoring, the reply's own span first; none for free-form questions."""
        if question.qtype in FREE_FORM_TYPES:
            return []
        asked = question_words(question)
        spans = candidate_spans(evidence)
        typed = [s for s in spans if s.label_ in question.expected_labels]
        if typed:  # the question says what kind of thing the answer is: only those compete
            spans = typed + [s for s in spans if s.label_ == "" and question.qtype in ("how many", "how much")]
        if reply_offsets is not None:
            reply_span = doc.char_span(*reply_offsets, alignment_mode="expand")
            spans = ([reply_span] if reply_span is not None else []) + spans
        unique, seen = [], set()
        for span in spans:
            words = set(words_of(span.text))
            if (span.start, span.end) in seen or not words or words <= asked:
                continue
            seen.add((span.start, span.end))
            unique.append(span)
        return unique[:self.max_candidates]

    def choose(self, question: QuestionAnalysis, candidates: list[Span], scores, core: str,
               reply_offsets: tuple[int, int] | None) -> Choice:
        """The best candidate by likelihood and agreement; without candidates, the reply's span
        (none for free-form questions: their reply is an explanation, not a span)."""
        if not candidates:
            return Choice(None if question.qtype in FREE_FORM_TYPES else reply_offsets, None)
        asked = question_words(question)
        core_words = [w for w in words_of(core) if w not in asked]
        combined = []
        for span, score in zip(candidates, scores):
            in_reply = reply_offsets is not None and span.start_char < reply_offsets[1] and reply_offsets[0] < span.end_char
            overlap = word_f1([w for w in words_of(span.text) if w not in asked], core_words) if core_words else 0.0
            likelihood = score.total_logprob / math.sqrt(len(score.token_logprobs))
            combined.append(self.likelihood_weight * likelihood + self.reply_weight * in_reply
                            + self.overlap_weight * overlap + self.label_weight * (span.label_ in question.expected_labels))
        best = max(range(len(candidates)), key=combined.__getitem__)
        top = combined[best]
        confidence = 1.0 / sum(math.exp(c - top) for c in combined)
        return Choice((candidates[best].start_char, candidates[best].end_char), confidence)


@registry.misc("nlpipe.SpanSelector.v1")
def make_span_selector(max_candidates: int = 16, likelihood_weight: float = 0.5, reply_weight: float = 1.0,
                       overlap_weight: float = 2.0, label_weight: float = 1.0) -> SpanSelector:
    """Weights of: the model's length-normalised log-likelihood of the candidate (about -2 to
    -15), overlapping the reply's span (0/1), word F1 with the reply (0-1), expected type (0/1)."""
    return SpanSelector(max_candidates, likelihood_weight, reply_weight, overlap_weight, label_weight)
