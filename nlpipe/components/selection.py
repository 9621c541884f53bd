"""Choose the answer span among candidate spans of the document.

Candidates are the entities, lists of entities, noun chunks and numbers of the sentences that
match the question best, and (with weights fitted with them) the trained reader's five most
probable spans, which are often none of those ("about 2,850 kilometres"). Each one is described
by the named features below and scored by their weighted sum: what the trained reader
(reading.Reader, one pass of the model over question and document) makes of it, the model's
likelihood of giving it as the answer, whether its type is the one the question asks for, and
where it sits relative to the question's words in the text and in the dependency parse: the
reader knows what the model read, the spaCy features what the parse says, and together they
beat either alone (README, "How good are the answers"). The fitted lexicon (lexical.py) adds a
weight for each conjunction of the question's type with the candidate's labels and its
dependency path to the question's words. A softmax over the scores
(with a temperature fitted so that confidence matches how often the answer is right) gives the
confidence of the chosen span. Whether to answer at all is a separate, absolute decision: a
logistic regression on question-level inputs (how much of the question the text says, how
clearly the best candidate wins) against a fitted threshold.
The default weights live in weights/span_selector.v13.json with their provenance, written by
`nlpipe fit` (nlpipe.components.fitting) and checked by article-level cross-validation
(benchmarks/cross_article.py).
"""

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

# Constrained types from pydantic's v1 API: the one confection checks config values with.
from pydantic.v1 import PositiveFloat, PositiveInt, confloat

from spacy.tokens import Doc, Span, Token
from spacy.util import registry

from ..errors import ConfigError, Errors
from ..files import read_small_file
from ..llm.reader import NOT_TOP, TOP_SPANS, UNREAD
from ..metrics import normalize_answer, word_f1
from .lexical import lexical_features, lexicon_score, tree_climbs
from .questions import QuestionAnalysis, is_content, lemma_of, negates, question_words, telling_lemmas, words_of
from .units import ASKED_DIMENSIONS, measure_clash

# Question types whose answer is rarely a span of the text: their reply is kept as generated.
FREE_FORM_TYPES = ("why", "how", "yes/no")
LONG_CANDIDATE = 8  # tokens: answers longer than this are rare, NER run-ons are not
NEAR_WINDOW = 8  # tokens either side of a candidate that count as near it
_YEAR = re.compile(r"(in )?\d{4}")
_LIST_JOINERS = {",", "and", "or", "&"}
# Entity labels of numbers, dates and amounts: "Who won?" is never answered by one of these.
NUMERIC_LABELS = ("DATE", "TIME", "PERCENT", "MONEY", "QUANTITY", "ORDINAL", "CARDINAL")

FEATURES = {
    "likelihood": "the model's log-likelihood of replying with the candidate, total / sqrt(tokens)",
    "expected_type": "+1 if its entity label is one the question expects (or its head noun names, see noun_labels); "
                     "-1 if another candidate's is and its is not",
    "type_clash": "1 for a number or date when the question asks for a name, or the reverse",
    "top_sentence": "1 in the sentence that matches the question best",
    "sentence": "its sentence's match with the question, relative to the best sentence's",
    "proximity": "1 / (1 + token distance to the nearest question word in its sentence)",
    "near": "share of the question's content words within 8 tokens of it",
    "tree": "1 / (1 + dependency-tree distance to the nearest question word)",
    "verb": "its head, or its head's head, is the question's main verb",
    "role": "it has the wh-phrase's dependency relation under a head with the same lemma",
    "question_words": "share of its words that the question already has",
    "length": "its length in tokens / 10, at most 1",
    "too_long": "1 if longer than 8 tokens",
    "entity": "1 if it has an entity label (an entity, a list of them, a number inside one)",
    "unit": "1 if followed or governed by the noun the question counts or names ('how many years' → '44 years')",
    "head_noun": "1 if that noun is part of its name ('what prize' → 'Driehaus Architecture Prize')",
    "year": "1 for a year, when the question asks when or what year",
    "mean_logprob": "the model's mean token log-likelihood of it",
    "reply": "1 if it overlaps the span the generated reply matched (needs generation)",
    "reply_words": "word F1 with the generated reply (needs generation)",
    "reader_exact": "the trained reader's log-probability of exactly this span (needs the reader)",
    "reader_start": "its log-probability of an answer starting where the span starts",
    "reader_end": "its log-probability of an answer ending where the span ends",
    "reader_overlap": "the share of its answer probability on spans that overlap this one",
    "reader_inside": "the share on spans inside this one",
    "reader_first": "1 if it is the reader's most probable span",
    "reader_top": f"1 if it is one of the reader's {TOP_SPANS} most probable spans (llm.reader.TOP_SPANS), which "
                  "join the candidates when the weights weigh these two features",
}
REPLY_FEATURES = ("reply", "reply_words")
READER_FEATURES = ("reader_exact", "reader_start", "reader_end", "reader_overlap", "reader_inside", "reader_first",
                   "reader_top")
# Weighing these makes the reader's best spans candidates (weighs_reader_spans).
READER_SPAN_FEATURES = ("reader_first", "reader_top")
# The features the model's scores give: 0 while the shortlist is chosen, before any scoring.
MODEL_FEATURES = ("likelihood", "mean_logprob")
_BEST_FEATURES = ("likelihood", "expected_type", "near", "proximity", "sentence", "type_clash", "reader_exact",
                  "reader_overlap")
ANSWERABILITY_FEATURES = {
    "bias": "1 (the model's intercept)",
    "best_score": "the best candidate's combined score",
    "margin": "its lead over the second best",
    "share": "its softmax share (the confidence an answer gets)",
    **{f"best_{name}": f"its '{name}' feature" for name in _BEST_FEATURES},
    "sentence_coverage": "share of the question's content words (questions.telling_lemmas) in the best-matching "
                         "sentence (1 if it has none)",
    "document_coverage": "share of them anywhere in the document",
    "entity_coverage": "share of the question's entities the document names (1 if it names none)",
    "missing_words": "content words of the question the document lacks, at most 5, / 5",
    "sentence_weight": "as sentence_coverage, each word weighted by its rarity in the document",
    "missing_weight": "the rarity-weighted share of the question's content words the document lacks",
    "unmatched_negation": "1 if the question says \"not\" (questions.negates) and its best-matching sentence does "
                          "not, else 0",
    "reader_no_answer": "the trained reader's probability that the document does not answer (needs the reader)",
    "verifier_no_answer": "the reader's verifier's probability that the best-matching sentences do not answer "
                          "(llm.verifier; needs a reader with a verifier)",
}
# The fitted weights ship as versioned files: the one source of the defaults (see read_weights).
WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_WEIGHTS_FILE = "span_selector.v13.json"  # v12 (the verifier's own folds) with a calibrated no-answer model
# Fitted without a reader: for a model the shipped reader was not trained for (llama_qa.selector_for_model).
NO_READER_WEIGHTS_FILE = "span_selector.v2.json"
WEIGHTS_FORMATS = ("nlpipe.SelectorWeights.v1", "nlpipe.SelectorWeights.v2", "nlpipe.SelectorWeights.v3")


def candidate_spans(evidence: list[Span]) -> list[Span]:
    """Entities, lists of entities, noun chunks and numbers inside the evidence: the spans an
    answer usually is. (Whole noun phrases, a noun with all it governs, were tried as well: they
    lowered F1 on the dev part by 1.1 points with the same weights, so they are not candidates.)"""
    candidates = []
    for sent in evidence:
        candidates.extend(sent.ents)
        candidates.extend(entity_lists(sent))
        if sent.doc.has_annotation("DEP"):
            # Unlabelled: spaCy labels noun chunks "NP", and a candidate's label is its entity type.
            candidates.extend(Span(sent.doc, chunk.start, chunk.end, label=team_label(chunk))
                              for chunk in sent.noun_chunks)
        # A number inside an entity keeps its type: "487" of "487 yards" is a QUANTITY too,
        # and "How many yards?" is answered "487".
        candidates.extend(Span(sent.doc, t.i, t.i + 1, label=t.ent_type_) for t in sent if t.like_num)
    return candidates


def team_label(chunk: Span) -> str:
    """The label of a noun chunk: ORG for a place name then a plural name outside it ("Denver
    Broncos": GPE + PRODUCT to en_core_web_sm, "Dallas Cowboys": GPE + nothing), a team named
    after its place, which "Which team...?" asks for; else none (a noun chunk is unlabelled)."""
    name = [t for t in chunk if t.pos_ != "DET"]
    if len(name) != 2 or not all(t.pos_ == "PROPN" for t in name):
        return ""
    place, plural = name
    return "ORG" if (place.ent_type_ == "GPE" and place.ent_iob_ == "B" and plural.ent_iob_ != "I"
                     and plural.ent_type_ not in ("GPE", "LOC", "FAC", "PERSON")
                     and plural.is_title and (plural.tag_ == "NNPS" or plural.text.endswith("s"))) else ""


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


@dataclass
class Choice:
    offsets: tuple[int, int] | None
    confidence: float | None  # that the span is right; for "no answer", that there is none
    logprob: float | None = None  # the model's mean token log-prob of the chosen span as the reply
    answerable: bool = True
    # The k best distinct spans (offsets, confidence), best first, when top_k > 1.
    alternatives: list[tuple[tuple[int, int], float]] | None = None
    no_answer: float | None = None  # the chance that the document does not answer, where one was weighed


def read_weights(name_or_path: str | Path) -> dict:
    """A weights file: a path, or the name of one shipped in nlpipe/components/weights. Holds
    {"format", "weights", "lexicon", "temperature", "answerability", "provenance"} as
    fitting.write_weights writes it. "answerability" ({"weights", "threshold"}) is absent from v1
    files: without it a question is always answered; "lexicon" (lexical feature → weight, see
    lexical.py) from v1 and v2 files: no lexical feature counts."""
    path = Path(name_or_path)
    if not path.is_file() and (WEIGHTS_DIR / path.name).is_file() and path.name == str(name_or_path):
        path = WEIGHTS_DIR / path.name
    try:
        data = json.loads(read_small_file(path))
        if data.get("format") not in WEIGHTS_FORMATS:
            raise ValueError(f"format is {data.get('format')!r}, not one of {', '.join(WEIGHTS_FORMATS)}")
        answerability = data.get("answerability") or {"weights": {}, "threshold": None}
        # A feature the file does not name is one it was fitted without: weight 0, not the default's.
        weights = {**dict.fromkeys(FEATURES, 0.0), **_numbers(data["weights"])}
        return {**data, "weights": weights, "lexicon": _numbers(data.get("lexicon") or {}),
                "temperature": float(data["temperature"]),
                "answerability": {"weights": _numbers(answerability["weights"]),
                                  "threshold": _probability(answerability["threshold"])}}
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as err:
        raise ConfigError(Errors.E083.format(path=name_or_path, reason=getattr(err, "strerror", None) or err)) from None


def _numbers(weights: dict) -> dict[str, float]:
    if not all(isinstance(w, (int, float)) for w in weights.values()):
        raise ValueError("every weight must be a number")
    return {name: float(w) for name, w in weights.items()}


def _probability(value) -> float | None:
    if value is not None and not (isinstance(value, (int, float)) and 0 <= value <= 1):
        raise ValueError(f"the answerability threshold must be a number from 0 to 1, not {value!r}")
    return None if value is None else float(value)


SHIPPED = read_weights(DEFAULT_WEIGHTS_FILE)
DEFAULT_WEIGHTS: dict[str, float] = SHIPPED["weights"]
DEFAULT_TEMPERATURE: float = SHIPPED["temperature"]


class SpanSelector:
    """Scores candidates by weighted features (`weights`, see FEATURES) plus the weights of their
    lexical features (`lexicon`, see lexical.py), takes the best, and
    answers at all only if the answerability model (`answerability`, see
    ANSWERABILITY_FEATURES, a logistic regression) gives the question at least `threshold`
    probability of being answerable; `threshold` None answers every question."""

    def __init__(self, max_sentences: int = 8, max_candidates: int = 12, weights: Dict[str, float] | None = None,
                 temperature: float = DEFAULT_TEMPERATURE, answerability: Dict[str, float] | None = None,
                 threshold: float | None = None, weights_file: str | None = None,
                 overrides: Dict[str, float] | None = None, lexicon: Dict[str, float] | None = None,
                 chosen_threshold: float | None = None):
        self.max_sentences = max_sentences
        # The user's own no_answer_threshold (None: the weights file's), kept if the weights change.
        self.chosen_threshold = chosen_threshold
        # Where the weights came from, and the single weights set over them (llama_qa.selector_for_model).
        self.weights_file = weights_file
        self.overrides = dict(overrides or {})
        self.max_candidates = max_candidates
        self.weights = {**DEFAULT_WEIGHTS, **_known(weights or {}, FEATURES, "weights")}
        self.lexicon = dict(lexicon or {})
        if not temperature > 0:
            raise ConfigError(Errors.E084.format(section="selector", key="temperature",
                                                 message=f"must be > 0, not {temperature}"))
        self.temperature = temperature
        self.answerability = _known(answerability or {}, ANSWERABILITY_FEATURES, "answerability")
        if threshold is not None and not (0 <= threshold <= 1 and self.answerability):
            raise ConfigError(Errors.E084.format(section="selector", key="no_answer_threshold", message=(
                f"must be from 0 to 1, not {threshold}" if self.answerability else
                "needs answerability weights, and the weights file has none (fit them with nlpipe fit)")))
        self.threshold = threshold

    @property
    def uses_reader(self) -> bool:
        """Whether choosing needs the trained reader's features (weights fitted with it)."""
        return any(self.weights[name] for name in READER_FEATURES) or \
            any(self.answerability.get(name) for name in ("reader_no_answer", "verifier_no_answer"))

    @property
    def weighs_verifier(self) -> bool:
        """Whether deciding "no answer" weighs the reader's verifier (llm.verifier): only then is
        it worth its pass, about a quarter of answering's time."""
        return self.threshold is not None and bool(self.answerability.get("verifier_no_answer"))

    @property
    def takes_reader_spans(self) -> bool:
        """Whether the reader's best spans join the candidates (weights fitted with them)."""
        return weighs_reader_spans(self.weights)

    @property
    def uses_reply(self) -> bool:
        """Whether choosing a span needs the generated reply (else span questions skip generation)."""
        return any(self.weights[name] for name in REPLY_FEATURES)

    def all_candidates(self, ranked: list[tuple[Span, float]], question: QuestionAnalysis,
                       reader_spans: list[Span] = ()) -> list[Span]:
        """Every distinct candidate span of the `max_sentences` best-matching sentences, then
        `reader_spans` (the reader's best), except those made of the question's own words (they
        restate it) and measures of another kind than the question asks for ("How tall?": not
        "1.8 hectares"). None for free-form questions."""
        if question.qtype in FREE_FORM_TYPES:
            return []
        asked = question_words(question)
        unique, seen = [], set()
        for span in [*candidate_spans([sentence for sentence, _ in ranked[:self.max_sentences]]), *reader_spans]:
            words = set(words_of(span.text))
            if (span.start, span.end) in seen or not words or words <= asked or not measures_as_asked(question, span):
                continue
            seen.add((span.start, span.end))
            unique.append(span)
        return unique

    def candidates(self, ranked: list[tuple[Span, float]], question: QuestionAnalysis,
                   limit: int | None = None, reading=None, reader_spans: bool | None = None) -> list[Span]:
        """The candidates worth asking the model about: the `max_candidates` (or `limit`) best
        by every feature but the model's likelihood (scoring is what costs time, and the rest
        rarely misses the answer). `reading`: the reader's (reading.Reading) of the question,
        whose best spans are candidates too if `reader_spans` (None: if the weights weigh them)."""
        limit = limit or self.max_candidates
        take = self.takes_reader_spans if reader_spans is None else reader_spans
        doc = ranked[0][0].doc if ranked else None
        spans = [doc.char_span(*offsets) for offsets in reading.top_offsets()] if take and reading and doc else []
        unique = self.all_candidates(ranked, question, [span for span in spans if span is not None])
        if len(unique) <= limit:
            return unique
        rows = candidate_features(question, unique, ranked[:self.max_sentences], reading=reading)
        prior = [self.combine(row, lexical) for row, lexical in zip(rows, self.lexical(question, unique))]
        return [unique[i] for i in shortlist(prior, limit)]

    def combine(self, features: dict, lexical: list[str] = ()) -> float:
        """A candidate's score: its weighted features plus the weights of its lexical features."""
        return sum(self.weights[name] * value for name, value in features.items()) + \
            lexicon_score(self.lexicon, lexical)

    def lexical(self, question: QuestionAnalysis, spans: list[Span]) -> list[list[str]]:
        """Each span's lexical features; none where the weights have no lexicon."""
        return [lexical_features(question, span) if self.lexicon else [] for span in spans]

    def choose(self, question: QuestionAnalysis, candidates: list[Span], ranked: list[tuple[Span, float]],
               scores, reply_offsets: tuple[int, int] | None = None, core: str = "", top_k: int = 1,
               reading=None) -> Choice:
        """The best candidate by weighted features, or no answer when the question looks
        unanswerable; without candidates, the reply's span (none for free-form questions: their
        reply is an explanation, not a span). With `top_k` > 1 also the k best distinct spans."""
        if not candidates:
            return Choice(None if question.qtype in FREE_FORM_TYPES else reply_offsets, None)
        features = candidate_features(question, candidates, ranked[:self.max_sentences], scores, reply_offsets, core,
                                      reading)
        combined = [self.combine(row, lexical) for row, lexical in zip(features, self.lexical(question, candidates))]
        order = best_first(combined)
        shares = [softmax_share(combined, i, self.temperature) for i in range(len(candidates))]
        best = order[0]
        alternatives = distinct_spans([candidates[i] for i in order], [shares[i] for i in order], top_k) \
            if top_k > 1 else None
        answerable = None if self.threshold is None else answerable_probability(self.answerability, (
            answerability_features(features[best], combined, shares[best],
                                   question_context(question, candidates[0].doc, ranked, reading))))
        no_answer = None if answerable is None else 1.0 - answerable
        if answerable is not None and answerable < self.threshold:
            return Choice(None, no_answer, answerable=False, alternatives=alternatives, no_answer=no_answer)
        return Choice((candidates[best].start_char, candidates[best].end_char), shares[best],
                      scores[best].mean_logprob, alternatives=alternatives, no_answer=no_answer)



def best_first(scores: list[float]) -> list[int]:
    """Indices by score, best first; ties keep document order. The one ordering of candidates,
    for answering (SpanSelector) and for fitting (fitting.ranking) alike."""
    return sorted(range(len(scores)), key=lambda i: -scores[i])


def shortlist(prior: list[float], limit: int) -> list[int]:
    """The `limit` best by their prior score (every feature but the model's), in document order:
    the candidates the model scores."""
    return sorted(best_first(prior)[:limit])


def _known(weights: dict, names: dict, key: str) -> dict:
    unknown = sorted(set(weights) - set(names))
    if unknown:
        raise ConfigError(Errors.E084.format(section="selector", key=key, message=(
            f"unknown feature(s) {', '.join(unknown)}; known: {', '.join(names)}")))
    return dict(weights)


def weighs_reader_spans(weights: dict[str, float]) -> bool:
    """Whether weights that weigh the reader's best spans (READER_SPAN_FEATURES) make those
    spans candidates: the one rule for the selector and for a fit's replay of it."""
    return any(weights.get(name, 0.0) for name in READER_SPAN_FEATURES)


def answerable_probability(model: dict[str, float], inputs: dict[str, float]) -> float:
    """The answerability model's chance that the question has an answer: the logistic function
    of its weighted inputs (answerability_features); a weight it lacks counts 0."""
    logit = sum(model.get(name, 0.0) * value for name, value in inputs.items())
    return 1.0 / (1.0 + math.exp(-logit)) if logit > -60 else 0.0


def distinct_spans(spans: list[Span], confidences: list[float], k: int) -> list[tuple[tuple[int, int], float]]:
    """The first `k` spans whose answers differ (as SQuAD normalises them: "the Broncos" and
    "Broncos" are one answer, which keeps the confidence of its best span)."""
    seen, chosen = set(), []
    for span, confidence in zip(spans, confidences):
        key = normalize_answer(span.text)
        if key in seen:
            continue
        seen.add(key)
        chosen.append(((span.start_char, span.end_char), confidence))
        if len(chosen) == k:
            break
    return chosen


def question_context(question: QuestionAnalysis, doc: Doc, ranked: list[tuple[Span, float]], reading=None) -> dict:
    """The answerability inputs that no candidate carries: how much of the question the best
    sentence and the whole document say. A question about something the text does not mention
    rarely has an answer in it, whatever its best candidate scores. Words count by their
    rarity among the document's sentences (a missing "1858" says more than a missing "year"). A
    question that negates what its best sentence states ("Who did not win?" of "X won") asks
    for what the text does not say: 9.6 % of the pool's unanswerable questions do so, 0.8 % of
    its answerable ones."""
    focus = telling_lemmas(question)
    sentences = [unit for unit, _ in ranked] or [doc[:]]
    lemmas = [{lemma_of(t) for t in unit if is_content(t)} for unit in sentences]
    in_doc = set().union(*lemmas)
    rarity = {w: math.log(1 + len(lemmas) / (1 + sum(w in unit for unit in lemmas))) for w in focus}
    total = sum(rarity.values()) or 1.0
    text = doc.text.lower()
    found = [e for e in question.entities if e.lower() in text]
    # A question without content words ("Where is it?") lacks nothing the text could fail to
    # say: its coverage is whole, as entity_coverage is for a question without entities.
    return {
        "sentence_coverage": len(focus & lemmas[0]) / len(focus) if focus else 1.0,
        "document_coverage": len(focus & in_doc) / len(focus) if focus else 1.0,
        "entity_coverage": len(found) / len(question.entities) if question.entities else 1.0,
        "missing_words": min(5, len(focus - in_doc)) / 5,
        "sentence_weight": sum(rarity[w] for w in focus & lemmas[0]) / total if focus else 1.0,
        "missing_weight": sum(rarity[w] for w in focus - in_doc) / total,
        "unmatched_negation": float(question.negated and not negates(sentences[0])),
        "reader_no_answer": reading.no_answer if reading is not None else 0.0,
        "verifier_no_answer": reading.verified if reading is not None and reading.verified is not None else 0.0,
    }


def answerability_features(best: dict, combined: list[float], share: float, context: dict) -> dict:
    """The answerability model's inputs (ANSWERABILITY_FEATURES) for a question whose best
    candidate has features `best`, given all candidates' combined scores."""
    ordered = sorted(combined, reverse=True)
    return {"bias": 1.0, "best_score": ordered[0], "margin": ordered[0] - ordered[1] if len(ordered) > 1 else 0.0,
            "share": share, **{f"best_{name}": best[name] for name in _BEST_FEATURES}, **context}


def softmax_share(scores: list[float], index: int, temperature: float) -> float:
    """The share of scores[index] in a softmax over `scores` at `temperature`."""
    return 1.0 / sum(math.exp((score - scores[index]) / temperature) for score in scores)


def candidate_features(question: QuestionAnalysis, candidates: list[Span], ranked: list[tuple[Span, float]],
                       scores=None, reply_offsets: tuple[int, int] | None = None, core: str = "",
                       reading=None) -> list[dict]:
    """One {feature: value} per candidate (see FEATURES). `ranked` are the sentences (evidence
    units) the candidates come from, with their match scores, best first; `scores` the
    candidates' ContinuationScores (without them, the likelihood feature is 0); `reading` the
    reader's Reading of the question (without it, the reader features say "never read")."""
    asked = question_words(question)
    best_match = max((score for _, score in ranked), default=0.0) or 1.0
    unit_at = {i: (rank, unit, score) for rank, (unit, score) in enumerate(ranked) for i in range(unit.start, unit.end)}
    expected = question.expected_labels or (noun_labels(candidates[0].doc, question.head_noun)
                                            if candidates and question.head_noun else ())
    typed_exists = any(span.label_ in expected for span in candidates)
    asks_numeric = all(label in NUMERIC_LABELS for label in expected)
    reply_words = [w for w in words_of(core) if w not in asked]
    rows = []
    for span, score in zip(candidates, scores or [None] * len(candidates)):
        rank, sentence, match = unit_at.get(span.start, (len(ranked), span.doc[:], 0.0))
        asked_tokens = [t for t in sentence if is_content(t) and lemma_of(t) in question.focus_lemmas
                        and not span.start <= t.i < span.end]
        words = words_of(span.text)
        after = span.doc[span.end] if span.end < len(span.doc) else None
        near = {lemma_of(t) for t in span.doc[max(sentence.start, span.start - NEAR_WINDOW):
                                            min(sentence.end, span.end + NEAR_WINDOW)] if is_content(t)}
        typed = span.label_ in expected
        own_words = [w for w in words if w not in asked]
        rows.append({
            "likelihood": score.total_logprob / math.sqrt(len(score.token_logprobs)) if score else 0.0,
            "expected_type": 1.0 if typed else (-1.0 if typed_exists else 0.0),
            "type_clash": float(bool(expected) and _is_numeric(span) != asks_numeric),
            "top_sentence": float(rank == 0),
            "sentence": match / best_match,
            "proximity": 1.0 / (1 + min((_token_distance(span, t) for t in asked_tokens), default=30)),
            "near": len(near & question.focus_lemmas) / max(1, len(question.focus_lemmas)),
            "tree": 1.0 / (1 + min((_tree_distance(span.root, t) for t in asked_tokens), default=20)),
            "verb": float(question.main_verb is not None
                          and question.main_verb in (lemma_of(span.root.head), lemma_of(span.root.head.head))),
            "role": float(question.wh_role is not None and span.root.dep_ == question.wh_role[0]
                          and lemma_of(span.root.head) == question.wh_role[1]),
            "question_words": sum(w in asked for w in words) / max(1, len(words)),
            "length": min(len(span), 10) / 10,
            "too_long": float(len(span) > LONG_CANDIDATE),
            "entity": float(bool(span.label_)),
            "unit": float(question.unit is not None and question.unit in (
                lemma_of(after) if after is not None else None, lemma_of(span.root.head))),
            # Only inside a name: "the 20th anniversary" restates "what anniversary", it does not answer it.
            "head_noun": float(question.head_noun is not None and any(
                lemma_of(t) == question.head_noun and t.is_title for t in span)),
            "year": float((question.qtype == "when" or question.head_noun == "year")
                          and bool(_YEAR.fullmatch(span.text))),
            "mean_logprob": score.mean_logprob if score else 0.0,
            "reply": float(reply_offsets is not None
                           and span.start_char < reply_offsets[1] and reply_offsets[0] < span.end_char),
            "reply_words": word_f1(own_words, reply_words) if own_words and reply_words else 0.0,
            **(reading.features_of(span) if reading is not None else {**UNREAD, **NOT_TOP}),
        })
    return rows


def _is_numeric(span: Span) -> bool:
    """A number, date or amount: by its entity label, else by its head ("487 yards", "1939")."""
    if span.label_:
        return span.label_ in NUMERIC_LABELS
    return span.root.like_num or any(t.dep_ == "nummod" and span.start <= t.i < span.end for t in span.root.children)


def noun_labels(doc: Doc, noun: str) -> tuple[str, ...]:
    """The labels of the entities that `noun` names in this document ("kicker Justin Tucker",
    "Levi's Stadium"): the answer type of "What kicker...?" when no rule gives one."""
    labels = {}
    for ent in doc.ents:
        # The noun right before the entity ("kicker Justin Tucker") or as its head ("Levi's
        # Stadium"); an entity before the noun modifies it ("Ravens kicker"), not names it.
        if lemma_of(ent[-1]) == noun or (ent.start > 0 and lemma_of(doc[ent.start - 1]) == noun):
            labels[ent.label_] = True
    return tuple(labels)


def measures_as_asked(question: QuestionAnalysis, span: Span) -> bool:
    """False for a span that cannot answer a measurement question (units.measure_clash): its
    unit read after a bare number, its label from an entity it overlaps. Other questions skip
    that reading: this runs for every candidate."""
    return question.qtype not in ASKED_DIMENSIONS or not measure_clash(question.qtype, _measured(span),
                                                                        _entity_label(span))


def _entity_label(span: Span) -> str:
    """The span's label, else that of an entity it overlaps ("20 October" of "20 October 1973")."""
    return span.label_ or next((ent.label_ for ent in span.doc.ents
                                if ent.start < span.end and span.start < ent.end), "")


def _measured(span: Span) -> str:
    """The span's text with the unit after it when it ends in a number ("1.8" of "1.8 hectares"),
    and the rate it is part of ("9.81 metres" of "9.81 metres per second")."""
    doc, end = span.doc, span.end
    if span[-1].like_num and end < len(doc):
        end += 1
    if end + 1 < len(doc) and doc[end].lower_ == "per":
        end += 2
    return doc[span.start:end].text


def _token_distance(span: Span, token: Token) -> int:
    return min(abs(token.i - span.start), abs(token.i - (span.end - 1)))


def _tree_distance(a: Token, b: Token) -> int:
    """Edges between two tokens of one sentence in the dependency tree."""
    climbs = tree_climbs(a, b)
    return 20 if climbs is None else len(climbs[0]) + len(climbs[1])


@registry.misc("nlpipe.SpanSelector.v1")
def make_span_selector_v1(**settings) -> SpanSelector:
    raise ConfigError(Errors.E082.format(
        name="nlpipe.SpanSelector.v1", successor="nlpipe.SpanSelector.v3",
        why="chose among generated replies, which the current candidate scoring replaced"))


@registry.misc("nlpipe.SpanSelector.v2")
def make_span_selector_v2(max_sentences: PositiveInt = 8, max_candidates: PositiveInt = 12,
                          weights: Dict[str, float] = DEFAULT_WEIGHTS,
                          temperature: PositiveFloat = DEFAULT_TEMPERATURE) -> SpanSelector:
    """Weights written in the config. Candidates come from the `max_sentences` best-matching
    sentences; the model scores the `max_candidates` best of them by the other features.
    `weights` maps feature names (selection.FEATURES) to weights; a name left out keeps its
    default. Weights on reply features make span questions generate. `temperature` scales the
    softmax that gives the confidence. Every question is answered."""
    return SpanSelector(max_sentences, max_candidates, weights, temperature)


@registry.misc("nlpipe.SpanSelector.v3")
def make_span_selector(max_sentences: PositiveInt = 8, max_candidates: PositiveInt = 12,
                       weights_file: str = DEFAULT_WEIGHTS_FILE, weights: Dict[str, float] = {},
                       answerability: bool = True,
                       no_answer_threshold: Optional[confloat(ge=0, le=1)] = None) -> SpanSelector:
    """As v2, with the weights, temperature and answerability model read from `weights_file` (a
    path, or the name of a file shipped with nlpipe; `nlpipe fit` writes one); `weights`
    overrides single features. `answerability` false answers every question; else a question
    whose chance of being answerable is below `no_answer_threshold` (null: the file's fitted
    threshold) gets no answer."""
    fitted = read_weights(weights_file)
    model = fitted["answerability"]
    threshold = (no_answer_threshold if no_answer_threshold is not None else model["threshold"]) \
        if answerability else None
    return SpanSelector(max_sentences, max_candidates, {**fitted["weights"], **weights}, fitted["temperature"],
                        model["weights"], threshold, weights_file, weights, fitted["lexicon"], no_answer_threshold)
