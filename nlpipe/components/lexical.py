"""Lexical features of a candidate span: named conjunctions of what the question asks and what
the parse says of the span, each with a weight fitted on labelled questions.

The selector's named features (selection.FEATURES) say how a candidate relates to the question
in general terms; which relations matter depends on the question: "What did X cause?" wants the
object of the verb the question names, "Who won?" its subject, "What year?" a DATE. A weighted
sum cannot express "dobj is good for what-questions and bad for who-questions", so these
features are conjunctions (the question's type crossed with the span's dependency label, entity
label, the dependency path from the span to the nearest question word, the words around it), as
in the logistic-regression baseline of the SQuAD paper (Rajpurkar et al. 2016), whose
dependency-path and lexicalised features gave it most of its F1. Each is a string; `nlpipe fit`
learns a weight for every one seen in enough questions (fitting.fit_weights) and the selector
adds the weights of a candidate's features to its score.
"""

from spacy.tokens import Span, Token

from .questions import QuestionAnalysis, is_content, lemma_of

MAX_PATH = 4  # dependency edges: a longer path says little and is rarely seen twice


def lexical_features(question: QuestionAnalysis, span: Span) -> list[str]:
    """The conjunction features of one candidate span (strings; their weights are fitted)."""
    doc, root = span.doc, span.root
    asked = question.qtype
    noun = question.head_noun or "-"
    wh_dep, wh_head = question.wh_role or ("-", "-")
    entity = span.label_ or (span.ents[0].label_ if span.ents else "-")
    head = lemma_of(root.head)
    before = doc[span.start - 1].lower_ if span.start > 0 else "<s>"
    after = doc[span.end].lower_ if span.end < len(doc) else "</s>"
    path = _path_to_question(question, span)
    return [
        f"entity={entity}|q={asked}", f"entity={entity}|noun={noun}",
        f"pos={root.pos_}|q={asked}", f"dep={root.dep_}|q={asked}", f"dep={root.dep_}|wh_dep={wh_dep}",
        f"head_asked={head in question.focus_lemmas}|dep={root.dep_}",
        f"head_is_wh_head={head == wh_head}|dep={root.dep_}|wh_dep={wh_dep}",
        f"length={min(len(span), 6)}|q={asked}", f"first={span[0].pos_}|q={asked}", f"last={span[-1].pos_}|q={asked}",
        f"root={lemma_of(root)}|q={asked}", f"root={lemma_of(root)}|noun={noun}",
        f"path={path}|q={asked}", f"path={path}", f"path={path}|wh_dep={wh_dep}",
        f"before={before}|q={asked}", f"after={after}|q={asked}",
    ]


def _path_to_question(question: QuestionAnalysis, span: Span) -> str:
    """The shortest dependency path (labels up from the span's root to the common head, then
    down) to a question word in its sentence outside the span; "-" if none within MAX_PATH."""
    try:
        sentence = span.sent
    except ValueError:  # no sentence boundaries (a pipeline without a parser or senter)
        sentence = span.doc[:]
    inside = range(span.start, span.end)
    paths = [p for t in sentence if t.i not in inside and is_content(t) and lemma_of(t) in question.focus_lemmas
             for p in [_path(span.root, t)] if p is not None]
    return min(paths, default=(0, "-"))[1]


def _path(a: Token, b: Token) -> tuple[int, str] | None:
    """(edges, labels) from `a` up to the lowest common head of `a` and `b` ("^"), then down to
    `b` (">"); None beyond MAX_PATH edges."""
    climbs = tree_climbs(a, b)
    if climbs is None or len(climbs[0]) + len(climbs[1]) > MAX_PATH:
        return None
    up, down = climbs
    return len(up) + len(down), "^".join(t.dep_ for t in up) + "|" + ">".join(t.dep_ for t in reversed(down))


def tree_climbs(a: Token, b: Token) -> tuple[list[Token], list[Token]] | None:
    """The tokens from `a` and from `b` up to (not including) their lowest common head in the
    dependency tree; None when they share none (different sentences)."""
    up_a, up_b = [a, *a.ancestors], [b, *b.ancestors]
    depth_b = {t.i: depth for depth, t in enumerate(up_b)}
    for depth_a, t in enumerate(up_a):
        if t.i in depth_b:
            return up_a[:depth_a], up_b[:depth_b[t.i]]
    return None


def lexicon_score(lexicon: dict[str, float], features: list[str]) -> float:
    """The sum of the lexicon's weights of a candidate's lexical features (unknown ones weigh 0)."""
    return sum(lexicon.get(feature, 0.0) for feature in features)
