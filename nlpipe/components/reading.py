"""Answers by the trained reader (mode "reader"): the model reads the question, then the
document, and the reader's head picks the span, or says the document does not answer.

The spaCy side decides what the model reads: the Doc's sentences, grouped in document order
into windows that fit `max_tokens`, the windows holding the sentences that match the question
best first (evidence ranking). A short document is one window, read whole. Each window gets a
distribution over its spans and "no answer" (llm.reader.span_distribution); the answer is the
most probable span of any window, given only if the most hopeful window's chance of an answer
passes the threshold chosen by cross-validation. Offsets are snapped to the Doc's tokens.

Grounded mode (the default) reads the same way (`Reader.read`): each question's `Reading` also
holds what the distribution says of every candidate span of the selector (the reader features,
llm.reader.span_features), which the selector weighs with its spaCy features.
"""

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import torch
# Constrained types from pydantic's v1 API: the one confection checks config values with.
from pydantic.v1 import PositiveInt, confloat
from spacy.tokens import Span
from spacy.util import registry

from ..errors import ConfigError, Errors
from ..llm.engine import Failure, Llama
from ..llm.reader import (TOP_SPANS, UNREAD, ModelMismatch, SpanReader, best_spans, context_ids,
                          load_reader, question_ids, span_distribution, span_features)
from ..llm.verifier import Verifier, load_verifier, read_verification
from .answers import Answer
from .evidence import units_of
from .strategies import _place, failure_record
from .task import Asked

READERS_DIR = Path(__file__).parent / "readers"
DEFAULT_READER = "smollm2-135m"


@dataclass
class Window:
    """Consecutive sentences of a Doc that the model reads in one pass."""

    start_char: int
    end_char: int
    score: float  # the best evidence score of its sentences


def reader_folder(name_or_path: str) -> Path:
    """A reader folder: a path, or the name of one shipped in nlpipe/components/readers."""
    path = Path(name_or_path)
    if not (path / "reader.json").is_file() and (READERS_DIR / str(name_or_path) / "reader.json").is_file():
        return READERS_DIR / str(name_or_path)
    return path


class Reader:
    """`answerability` False answers every question (the best span); else a question gets "no
    answer" when P(no answer) ≥ `no_answer_threshold` (None: the reader's cross-validated one)."""

    def __init__(self, path: str = DEFAULT_READER, answerability: bool = True,
                 no_answer_threshold: float | None = None, max_tokens: int = 512, max_windows: int = 3):
        self.path = str(path)
        self.answerability = answerability
        self.no_answer_threshold = no_answer_threshold
        self.max_tokens = max_tokens
        self.max_windows = max_windows
        self._head: SpanReader | None = None
        self._verifier: Verifier | None = None  # llm.verifier: kept beside the reader, if it has one
        self._verifier_folder = None  # where the verifier is, if not beside the reader (use_path)
        self._meta: dict = {}

    def use_path(self, path, verifier=None) -> None:
        """Read with the reader in `path`, and the verifier in the folder `verifier` (None: the
        one beside that reader, if any)."""
        self.path, self._verifier_folder, self._head = str(path), verifier, None

    @property
    def folder(self) -> Path:
        return reader_folder(self.path)

    def head(self, llm: Llama) -> SpanReader:
        """The reader's model (its tuned layers, if any, and its head) for `llm`, loaded once,
        with its verifier (None if the folder has none)."""
        if self._head is None:
            try:
                head, self._meta = load_reader(self.folder, llm.model)
                config = llm.model.config
                self._verifier = load_verifier(Path(self._verifier_folder or self.folder), config.hidden_size,
                                               config.num_hidden_layers)
            except ModelMismatch as err:
                raise ConfigError(Errors.E087.format(path=self.path, why=err, model=llm.path)) from None
            except (OSError, ValueError, KeyError, TypeError, RuntimeError, RecursionError) as err:
                raise ConfigError(Errors.E086.format(path=self.path, reason=getattr(err, "strerror", None) or err)) from None
            self._head = head.to(llm.device)
        return self._head

    @property
    def threshold(self) -> float | None:
        if not self.answerability:
            return None
        if self.no_answer_threshold is not None:
            return self.no_answer_threshold
        return self._meta.get("provenance", {}).get("threshold")

    def windows(self, asked: Asked, count_tokens) -> list[Window]:
        """The Doc's evidence units in document order, grouped into windows of at most
        max_tokens, best-matching first, at most max_windows."""
        # A sentence longer than a window is cut into pieces that fit, as the evidence is.
        units = sorted(((piece, score) for span, score in asked.ranked
                        for piece in units_of(span, count_tokens, self.max_tokens)),
                       key=lambda pair: pair[0].start_char)
        windows, current, used = [], [], 0
        for span, score in units:
            n = count_tokens(span.text_with_ws)
            if current and used + n > self.max_tokens:
                windows.append(_window(current))
                current, used = [], 0
            current.append((span, score))
            used += n
        if current:
            windows.append(_window(current))
        return sorted(windows, key=lambda w: -w.score)[:self.max_windows]

    def read(self, asked: list[Asked], llm: Llama, spans: list[list[Span]] | None = None,
             top_k: int = 1, verify: bool = False) -> Iterator[tuple[int, "Reading | Failure"]]:
        """(row, Reading or Failure) for every asked question, in order: its `top_k` best spans,
        P(no answer), and the reader features of its `spans` (the selector's candidates); with
        `verify`, the verifier's P(no answer) too (an input of the selector's answerability model)."""
        if not asked:
            return
        head = self.head(llm)
        verified = self.verify(asked, llm) if verify else [None] * len(asked)
        plans = []  # per question: its windows, each with its context tokens' offsets
        rows = []  # per window: (question ids, context ids), what the model reads
        question_lengths = []  # per question: its prompt's tokens, where tuned layers' rows start the context
        for a in asked:
            question = question_ids(llm.tokenizer, a.question.text)
            question_lengths.append(len(question) if head.tuned is not None else 0)
            plan = []
            for window in self.windows(a, llm.count_tokens):
                ids, offsets = context_ids(llm.tokenizer, a.doc.text[window.start_char:window.end_char])
                # Token counts of pieces and of the joined text can differ by a token or two.
                plan.append((window, offsets[:self.max_tokens]))
                rows.append((question, ids[:self.max_tokens]))
            plans.append(plan)
        results, done, first = llm.read_stream(rows, head.config), {}, 0
        for row, (a, plan) in enumerate(zip(asked, plans)):
            # Rows that cannot run (too long) come first, the others in order: wait for this row's.
            while any(k not in done for k in range(first, first + len(plan))):
                k, result = next(results)
                done[k] = result
            read = [done.pop(k) for k in range(first, first + len(plan))]
            first += len(plan)
            failure = next((r for r in read if isinstance(r, Failure)), None)
            yield row, failure or self._reading(a, plan, read, head, question_lengths[row],
                                                spans[row] if spans else [], top_k, verified[row])

    def verify(self, asked: list[Asked], llm: Llama) -> list[float | None]:
        """The verifier's P(no answer) of each question (llm.verifier), read after its best-matching
        sentences; None for all without a verifier, for one whose row failed (out of memory)."""
        self.head(llm)  # loads the verifier with the reader
        verifier = self._verifier
        found: list[float | None] = [None] * len(asked)
        if verifier is None:
            return found
        for row, inputs in read_verification(llm, verification_pairs(asked, verifier.sentences), verifier.layers):
            if not isinstance(inputs, Failure):
                found[row] = float(verifier.no_answer(inputs[None])[0])
        return found

    def answer(self, asked: list[Asked], llm: Llama, top_k: int = 1) -> Iterator[tuple[int, Answer]]:
        """(row, Answer) for every asked question, in order."""
        for row, reading in self.read(asked, llm, top_k=top_k):
            yield row, self._answer(asked[row], reading, top_k)

    @torch.inference_mode()
    def _reading(self, asked: Asked, plan, read: list, head: SpanReader, question_length: int, spans: list[Span],
                 top_k: int, verified: float | None = None) -> "Reading":
        best, no_answer, features = [], 1.0, {}
        for (window, offsets), hidden in zip(plan, read):
            start, end = head(hidden[None], [question_length], [hidden.shape[0]])
            log_probs = span_distribution(start, end, head.config.max_answer_tokens)[0].float().cpu()
            found, window_no_answer = best_spans(log_probs, max(top_k, 1) * 3)
            no_answer = min(no_answer, window_no_answer)
            placed = [(s.probability, _doc_offsets(asked, window, offsets, s.first, s.last)) for s in found]
            best.extend(placed)
            # The reader features of the candidates and of the reader's own best spans (which
            # the selector may take as candidates too), as snapped to the Doc's tokens.
            asked_about = [(span.start_char, span.end_char) for span in spans] + [o for _, o in placed if o]
            inside = [(key, tokens) for key in dict.fromkeys(asked_about)
                      if (tokens := _token_span(window, offsets, *key)) is not None]
            for (key, _), row in zip(inside, span_features(log_probs, [tokens for _, tokens in inside])):
                features[key] = row
        ranked = _distinct(sorted((s for s in best if s[1] is not None), key=lambda s: -s[0]), top_k)
        return Reading(ranked, no_answer, features, verified)

    def _answer(self, asked: Asked, reading: "Reading | Failure", top_k: int) -> Answer:
        answer = Answer(asked.question.text, asked.index)
        if isinstance(reading, Failure) or not reading.spans:
            answer.error = failure_record(reading) if isinstance(reading, Failure) else None
            answer.evidence = asked.evidence[0] if asked.evidence else None
            if not isinstance(reading, Failure):
                answer.answerable, answer.confidence = False, reading.no_answer
                answer.no_answer = reading.no_answer
            return answer
        answer.no_answer = reading.no_answer
        threshold = self.threshold
        if threshold is not None and reading.no_answer >= threshold:
            answer.answerable, answer.confidence = False, reading.no_answer
            answer.evidence = asked.evidence[0] if asked.evidence else None
        else:
            probability, offsets = reading.spans[0]
            _place(answer, asked, offsets)
            answer.confidence = probability
            answer.logprob = math.log(max(probability, 1e-12))
        if top_k > 1:
            answer.alternatives = [{"text": asked.doc.text[start:end], "start_char": start, "end_char": end,
                                    "confidence": probability} for probability, (start, end) in reading.spans]
        return answer


def verification_pairs(asked: list[Asked], sentences: int) -> list[tuple[list[str], str]]:
    """(its `sentences` best-matching sentences, the question) of each question: what the
    verifier reads (llm.verifier.read_verification), when it answers and when it is fitted."""
    return [([unit.text for unit, _ in a.ranked[:sentences]], a.question.text) for a in asked]


@dataclass
class Reading:
    """What the reader made of one question: its best distinct spans (probability, Doc
    offsets), best first; P(no answer) in the most hopeful window; and the reader features
    (llm.reader.span_features) of the spans it was asked about and of its best ones, by their
    offsets. In grounded mode `spans` holds at least TOP_SPANS (llama_qa.readings asks for them),
    and `verified` the verifier's P(no answer) where the reader has a verifier."""

    spans: list[tuple[float, tuple[int, int]]]
    no_answer: float
    features: dict[tuple[int, int], dict[str, float]]
    verified: float | None = None

    def features_of(self, span: Span) -> dict[str, float]:
        """The reader features of `span` (selection.READER_FEATURES)."""
        key = (span.start_char, span.end_char)
        top = self.top_offsets()
        return {**self.features.get(key, UNREAD), "reader_first": float(top[:1] == [key]),
                "reader_top": float(key in top)}

    def top_offsets(self) -> list[tuple[int, int]]:
        """The Doc offsets of the reader's TOP_SPANS most probable spans, best first."""
        return [offsets for _, offsets in self.spans[:TOP_SPANS]]


def _token_span(window: Window, offsets, start_char: int, end_char: int) -> tuple[int, int] | None:
    """The window's context tokens (first, last) that overlap Doc characters start..end; None
    outside the window."""
    start, end = start_char - window.start_char, end_char - window.start_char
    tokens = [k for k, (a, b) in enumerate(offsets) if b > start and a < end]
    return (tokens[0], tokens[-1]) if tokens else None


def _window(units: list[tuple[Span, float]]) -> Window:
    return Window(units[0][0].start_char, units[-1][0].end_char, max(score for _, score in units))


def _doc_offsets(asked: Asked, window: Window, offsets, first: int, last: int) -> tuple[int, int] | None:
    """The Doc's character offsets of context tokens first..last, widened to whole spaCy tokens
    and without surrounding whitespace; None for a span of whitespace only."""
    text = asked.doc.text
    start, end = window.start_char + offsets[first][0], window.start_char + offsets[last][1]
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if start >= end:
        return None
    span = asked.doc.char_span(start, end, alignment_mode="expand")
    return (span.start_char, span.end_char) if span is not None else (start, end)


def _distinct(spans: list[tuple[float, tuple[int, int]]], k: int) -> list[tuple[float, tuple[int, int]]]:
    """The k most probable spans with distinct offsets (snapping can make two spans one)."""
    seen, kept = set(), []
    for probability, offsets in spans:
        if offsets not in seen:
            seen.add(offsets)
            kept.append((probability, offsets))
        if len(kept) == k:
            break
    return kept


@registry.misc("nlpipe.Reader.v1")
def make_reader(path: str = DEFAULT_READER, answerability: bool = True,
                no_answer_threshold: Optional[confloat(ge=0, le=1)] = None, max_tokens: PositiveInt = 512,
                max_windows: PositiveInt = 3) -> Reader:
    """`path`: a folder written by `nlpipe train`, or the name of a shipped reader. `max_tokens`:
    model tokens of document per pass; `max_windows`: passes per question on a long document."""
    return Reader(path, answerability, no_answer_threshold, max_tokens, max_windows)
