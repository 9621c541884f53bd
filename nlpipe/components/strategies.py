"""How an asked question becomes an answer: the two modes of llama_qa.

Each strategy says which candidate spans the model should rank and whether a reply must be
generated, then turns the model's results into an `Answer`. Neither knows of devices.
"""

import math
from dataclasses import dataclass

from spacy.tokens import Span

from ..llm.engine import Completion, Failure
from ..llm.scoring import ContinuationScore
from .answers import Answer
from .grounding import find_phrase, ground
from .selection import FREE_FORM_TYPES, Choice, SpanSelector, measures_as_asked
from .task import Asked


@dataclass
class Reply:
    """A generated reply: the completion (or why there is none), its cleaned text and the part
    of it that carries the answer (grounding.answer_core)."""

    completion: Completion | Failure
    text: str = ""
    core: str = ""

    @property
    def failure(self) -> Failure | None:
        return self.completion if isinstance(self.completion, Failure) else None

    @property
    def generated(self) -> str | None:
        return None if self.failure else self.completion.text


def failure_record(failure: Failure) -> dict:
    return {"type": failure.kind.value, "message": failure.message}


def _unit_at(asked: Asked, start_char: int) -> Span | None:
    """The evidence unit (usually a sentence) holding `start_char`, else its sentence."""
    for span in asked.evidence:
        if span.start_char <= start_char < span.end_char:
            return span
    doc = asked.doc
    token_span = doc.char_span(start_char, start_char + 1, alignment_mode="expand")
    if token_span is not None and doc.has_annotation("SENT_START"):
        return token_span[0].sent
    return token_span


def _place(answer: Answer, asked: Asked, offsets: tuple[int, int]) -> None:
    """Make `answer` the span of the document at `offsets`, with the evidence unit holding it."""
    answer.offsets = offsets
    answer.text = asked.doc.text[slice(*offsets)]
    answer.evidence = _unit_at(asked, offsets[0])


class Generative:
    """The model's reply as it is; its offsets only where it appears verbatim in the document."""

    def candidates(self, asked: Asked, reading=None) -> list[Span]:
        return []

    def needs_reply(self, asked: Asked, candidates: list[Span], reading=None) -> bool:
        return True

    def with_reply(self, asked: Asked, candidates: list[Span], reply: Reply) -> list[Span]:
        return candidates

    def answer(self, asked: Asked, candidates: list[Span], reply: Reply | None,
               scores: list[ContinuationScore] | Failure | None, reading=None) -> Answer:
        answer = Answer(asked.question.text, asked.index, evidence=asked.evidence[0] if asked.evidence else None)
        if reply.failure:
            answer.error = failure_record(reply.failure)
            return answer
        answer.generated, answer.logprob = reply.generated, reply.completion.mean_logprob
        offsets = find_phrase(reply.text, asked.doc, asked.evidence) if reply.text else None
        if offsets is None:
            answer.text = reply.text or reply.completion.text
        else:
            _place(answer, asked, offsets)
        return answer


class Grounded:
    """A span of the document, chosen by the selector among typed candidates the model ranks
    (and, with weights fitted with it, the trained reader reads: `reading`). Questions without
    candidates (why/how/yes-no) get the reader's best span, or "no answer" when the reader's
    P(no answer) reaches `no_answer_threshold`; without a reader, their generated reply, marked
    ungrounded."""

    def __init__(self, selector: SpanSelector, top_k: int = 1, no_answer_threshold: float | None = None):
        self.selector = selector
        self.top_k = top_k
        self.no_answer_threshold = no_answer_threshold

    def candidates(self, asked: Asked, reading=None) -> list[Span]:
        return self.selector.candidates(asked.ranked, asked.question, reading=reading)

    def needs_reply(self, asked: Asked, candidates: list[Span], reading=None) -> bool:
        return (not candidates and reading is None) or self.selector.uses_reply

    def with_reply(self, asked: Asked, candidates: list[Span], reply: Reply) -> list[Span]:
        """The span the reply names joins the candidates when the selector weighs replies."""
        offsets = self._reply_offsets(asked, reply)
        if offsets is None or not self.selector.uses_reply:
            return candidates
        span = asked.doc.char_span(*offsets, alignment_mode="expand")
        if any((s.start, s.end) == (span.start, span.end) for s in candidates):
            return candidates
        return [span, *candidates]

    def _reader_choice(self, asked: Asked, reading) -> Choice:
        """The reader's own answer, for a question the selector has no candidates for."""
        threshold = self.no_answer_threshold
        spans = [(p, o) for p, o in reading.spans if self._measures_as_asked(asked, o)]
        if not spans or (threshold is not None and reading.no_answer >= threshold):
            return Choice(None, reading.no_answer, answerable=False, no_answer=reading.no_answer)
        probability, offsets = spans[0]
        return Choice(offsets, probability, math.log(max(probability, 1e-12)),
                      alternatives=[(o, p) for p, o in spans[:self.top_k]] if self.top_k > 1 else None,
                      no_answer=reading.no_answer)

    @staticmethod
    def _measures_as_asked(asked: Asked, offsets: tuple[int, int]) -> bool:
        """Whether the text at `offsets` may answer the question ("How tall?": not an area)."""
        span = asked.doc.char_span(*offsets, alignment_mode="expand")
        return span is None or measures_as_asked(asked.question, span)

    def _reply_offsets(self, asked: Asked, reply: Reply | None) -> tuple[int, int] | None:
        if reply is None or reply.failure:
            return None
        offsets = ground(reply.text, reply.core, asked.doc, asked.evidence, asked.question)
        return offsets if offsets is None or self._measures_as_asked(asked, offsets) else None

    def answer(self, asked: Asked, candidates: list[Span], reply: Reply | None,
               scores: list[ContinuationScore] | Failure | None, reading=None) -> Answer:
        answer = Answer(asked.question.text, asked.index)
        failure = next((f for f in (scores, reading, reply.failure if reply is not None else None)
                        if isinstance(f, Failure)), None)
        if reply is not None and not reply.failure:
            answer.generated, answer.logprob = reply.generated, reply.completion.mean_logprob
        if failure is not None:
            answer.error = failure_record(failure)
            choice = Choice(None, None)
        elif candidates:
            choice = self.selector.choose(asked.question, candidates, asked.ranked, scores,
                                          self._reply_offsets(asked, reply), reply.core if reply else "", self.top_k,
                                          reading)
        elif reading is not None:
            choice = self._reader_choice(asked, reading)
        else:
            # No candidates: the reply's span, except for free-form questions, whose reply is an
            # explanation and is given as it is.
            free_form = asked.question.qtype in FREE_FORM_TYPES
            choice = Choice(None if free_form else self._reply_offsets(asked, reply), None)
        answer.confidence, answer.answerable, answer.no_answer = choice.confidence, choice.answerable, choice.no_answer
        if self.top_k > 1:
            answer.alternatives = [{"text": asked.doc.text[start:end], "start_char": start, "end_char": end,
                                    "confidence": confidence} for (start, end), confidence in choice.alternatives or []]
        if choice.offsets is not None:
            _place(answer, asked, choice.offsets)
            if reply is None:
                answer.logprob = choice.logprob
        else:
            answer.evidence = asked.evidence[0] if asked.evidence else None
            # Document text is data: a reply that is not a span of the document is only ever
            # the answer to a free-form question.
            if asked.question.qtype in FREE_FORM_TYPES and reply is not None and not reply.failure:
                answer.text = reply.text or reply.completion.text
        return answer
