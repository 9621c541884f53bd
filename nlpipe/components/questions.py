"""What a question asks for, read from its spaCy annotations: type, expected entity labels, focus."""

import re
from dataclasses import dataclass, field

from spacy.tokens import Doc

# Entity labels an answer of each question type usually carries (OntoNotes labels, as in
# en_core_web_sm). Kept in one table so a different NER scheme needs one edit.
EXPECTED_LABELS = {
    "who": ("PERSON", "ORG", "NORP", "GPE"),
    "when": ("DATE", "TIME"),
    "where": ("GPE", "LOC", "FAC", "ORG"),
    "how many": ("CARDINAL", "QUANTITY", "MONEY", "PERCENT"),
    "how much": ("MONEY", "QUANTITY", "CARDINAL", "PERCENT"),
    "how long": ("DATE", "TIME", "QUANTITY"),
    "how old": ("DATE", "CARDINAL"),
    "how far": ("QUANTITY",),
    # Measurements: "how tall/high/big..." asks for a quantity, not an explanation.
    **{f"how {adjective}": ("QUANTITY", "CARDINAL") for adjective in (
        "tall", "high", "big", "large", "heavy", "wide", "deep", "fast", "small", "short")},
}
# Head nouns of "what X" / "which X" questions that name the answer's type. General nouns
# for people, organisations and places; a noun not listed here gets the labels of the
# entities it names in the document itself (see selection.noun_labels).
_PEOPLE = ("person", "player", "coach", "actor", "actress", "singer", "performer",
           "artist", "musician", "rapper", "host", "owner", "president", "commissioner", "author", "writer",
           "director", "producer", "scientist", "king", "queen", "leader", "founder", "architect", "painter",
           "poet", "composer", "manager", "executive", "chairman", "governor", "mayor", "senator", "minister",
           "pope", "bishop", "officer", "athlete", "winner", "announcer", "commentator", "analyst", "reporter",
           "journalist", "emperor", "ruler", "inventor", "professor", "teacher", "priest", "saint", "student",
           "man", "woman", "philosopher", "general", "prince", "princess", "candidate", "member")
_ORGANISATIONS = ("team", "company", "organization", "organisation", "university", "network", "band", "group",
                  "firm", "channel", "station", "service", "brand", "club", "school", "college", "league",
                  "agency", "party", "newspaper", "magazine", "publisher", "studio", "corporation",
                  "institution", "committee", "council", "government", "department", "broadcaster", "sponsor")
_PLACES = ("place", "location", "city", "country", "state", "town", "village", "capital", "region", "area",
           "county", "province", "continent", "island", "venue", "stadium", "arena", "hotel", "airport",
           "facility", "building", "museum", "church", "cathedral", "hall", "park", "street", "river", "lake",
           "mountain", "ocean", "sea")
HEAD_NOUN_LABELS = {
    **{noun: ("PERSON",) for noun in _PEOPLE},
    **{noun: ("ORG",) for noun in _ORGANISATIONS},
    **{noun: ("GPE", "LOC", "FAC", "ORG") for noun in _PLACES},
    # Narrower than the groups above:
    "city": ("GPE",), "country": ("GPE",), "state": ("GPE",), "town": ("GPE",), "capital": ("GPE",),
    "stadium": ("FAC", "ORG"), "building": ("FAC",), "river": ("LOC",), "lake": ("LOC",),
    "band": ("ORG", "PERSON"), "group": ("ORG", "PERSON", "NORP"),
    "year": ("DATE",), "date": ("DATE",), "day": ("DATE",), "month": ("DATE",), "decade": ("DATE",),
    "century": ("DATE",), "time": ("TIME", "DATE"), "name": ("PERSON", "ORG", "WORK_OF_ART"),
    "number": ("CARDINAL",), "percentage": ("PERCENT",), "amount": ("MONEY", "QUANTITY"), "price": ("MONEY",),
    "cost": ("MONEY",), "language": ("LANGUAGE", "NORP"), "nationality": ("NORP",), "event": ("EVENT",),
    "war": ("EVENT",), "battle": ("EVENT",), "book": ("WORK_OF_ART",), "song": ("WORK_OF_ART",),
    "film": ("WORK_OF_ART",), "movie": ("WORK_OF_ART",), "album": ("WORK_OF_ART",), "law": ("LAW",),
    "product": ("PRODUCT",),
}
# Words a question uses only to say what kind of answer it wants: a text says where a thing is
# without "located", and how tall it is without "tall" ("330 metres"). Missing from a text, they
# are no sign that it does not answer (selection.question_context).
_ASKING_WORDS = {"where": {"locate", "situate", "base", "lie", "find", "sit"}, "when": {"happen", "occur"}}
_WORD = re.compile(r"\w+", re.UNICODE)
WH_WORDS = ("who", "whom", "whose", "when", "where", "why", "how", "what", "which")
# Words that negate where the parse has no "neg" arc ("never" is one; "no" and "none" are
# determiners and pronouns).
NEGATING_WORDS = {"not", "n't", "never", "no", "none", "neither", "nor", "nobody", "nothing"}
AUXILIARIES = {"be", "do", "have", "can", "could", "will", "would", "should", "may", "might", "must", "shall"}


@dataclass
class QuestionAnalysis:
    text: str
    qtype: str  # who, when, where, how many, ..., what, which, why, how, yes/no, other
    expected_labels: tuple[str, ...] = ()
    head_noun: str | None = None
    main_verb: str | None = None
    focus_lemmas: set[str] = field(default_factory=set)  # content words, lower-cased lemmas
    entities: list[str] = field(default_factory=list)  # entity texts named in the question
    # The wh-word's dependency relation and its head's lemma: "Who won?" → ("nsubj", "win").
    wh_role: tuple[str, str] | None = None
    # The noun the answer counts or is: "how many years" → "year", "what prize" → "prize".
    unit: str | None = None
    negated: bool = False  # "What did the Broncos not win?" (see `negates`)


def lemma_of(token) -> str:
    return (token.lemma_ or token.text).lower()


def negates(tokens) -> bool:
    """Whether a question or sentence says "not": a negation arc or a negating word."""
    return any(t.dep_ == "neg" or t.lower_ in NEGATING_WORDS for t in tokens)


def is_content(token) -> bool:
    return not (token.is_stop or token.is_punct or token.is_space) and token.lower_ not in WH_WORDS


def question_type(doc: Doc) -> str:
    """who, when, where, how many, ..., what, which, why, how, yes/no or other; a Doc of the
    question with tokens alone will do."""
    return _question_type(doc)[0]


def _question_type(doc: Doc) -> tuple[str, str | None]:
    words = [t.lower_ for t in doc if not t.is_punct]
    if not words:
        return "other", None
    for i, word in enumerate(words):
        if word == "how" and i + 1 < len(words):
            pair = f"how {words[i + 1]}"
            if pair in EXPECTED_LABELS:
                return pair, None
            return "how", None
        if word in ("who", "whom", "whose"):
            return "who", None
        if word in ("when", "where", "why"):
            return word, None
        if word in ("what", "which"):
            return word, _head_noun(doc, word)
    if lemma_of(doc[0]) in AUXILIARIES:
        return "yes/no", None
    return "other", None


def _head_noun(doc: Doc, wh_word: str) -> str | None:
    """The noun a 'what'/'which' question asks for: 'what year' → year, 'what was the final
    score' → score, 'what is the name of the stadium' → stadium, 'what type of rally' → rally."""
    wh = next(t for t in doc if t.lower_ == wh_word)
    start = wh.i + 1
    if start < len(doc) and doc[start].lower_ in ("is", "was", "are", "were"):
        start += 1
    noun = _phrase_head(doc, start)
    if noun is not None and lemma_of(noun) in ("name", "type", "kind", "sort") and noun.i + 1 < len(doc) \
            and doc[noun.i + 1].lower_ == "of":
        noun = _phrase_head(doc, noun.i + 2) or noun
    return lemma_of(noun) if noun is not None else None


def _phrase_head(doc: Doc, start: int):
    """The last noun of the noun phrase that starts at `start` ('the final score' → score)."""
    head = None
    for token in doc[start:]:
        if token.pos_ in ("NOUN", "PROPN"):
            head = token
        elif not (token.pos_ in ("DET", "ADJ", "NUM", "PART", "SYM") or token.lower_ == "/"):
            break
    return head


def _wh_token(doc: Doc):
    return next((t for t in doc if t.lower_ in WH_WORDS), None)


def _wh_role(doc: Doc) -> tuple[str, str] | None:
    wh = _wh_token(doc)
    if wh is None:
        return None
    # "which team", "how many years": the role is the phrase's, not the wh-word's.
    phrase = wh.head if wh.dep_ in ("det", "advmod", "amod") and wh.head.pos_ in ("NOUN", "PROPN", "ADJ") else wh
    if phrase.dep_ in ("amod", "advmod") and phrase.head.pos_ in ("NOUN", "PROPN"):
        phrase = phrase.head
    return phrase.dep_, lemma_of(phrase.head)


def _counted_noun(doc: Doc) -> str | None:
    """'how many years' → 'year'."""
    wh = _wh_token(doc)
    if wh is None or wh.lower_ != "how" or wh.i + 2 >= len(doc):
        return None
    noun = doc[wh.i + 2]
    return lemma_of(noun) if noun.pos_ in ("NOUN", "PROPN") else None


def analyse_question(doc: Doc) -> QuestionAnalysis:
    qtype, head_noun = _question_type(doc)
    expected = EXPECTED_LABELS.get(qtype, ())
    if head_noun:
        expected = HEAD_NOUN_LABELS.get(head_noun, ())
    roots = [t for t in doc if t.dep_ == "ROOT"]
    main_verb = None
    if roots:
        root = roots[0]
        verbs = [root] + [t for t in root.children if t.pos_ == "VERB"]
        main_verb = next((lemma_of(t) for t in verbs if t.pos_ == "VERB" and lemma_of(t) not in AUXILIARIES), None)
    return QuestionAnalysis(
        text=doc.text,
        qtype=qtype,
        expected_labels=tuple(expected),
        head_noun=head_noun,
        main_verb=main_verb,
        focus_lemmas={lemma_of(t) for t in doc if is_content(t)},
        entities=[ent.text for ent in doc.ents],
        wh_role=_wh_role(doc),
        unit=head_noun or (_counted_noun(doc) if qtype in ("how many", "how much") else None),
        negated=negates(doc),
    )


def telling_lemmas(question: QuestionAnalysis) -> set[str]:
    """The question's content words that a text answering it says: its focus, less the words
    that only name the kind of answer (_ASKING_WORDS, the adjective of "how tall", the typed head
    noun of "what year" or "which city")."""
    asking = set(_ASKING_WORDS.get(question.qtype, ()))
    if question.qtype.startswith("how "):  # "many" and "much" are stop words, never in the focus
        asking.add(question.qtype.split()[1])
    if question.head_noun in HEAD_NOUN_LABELS:
        asking.add(question.head_noun)
    return question.focus_lemmas - asking


def words_of(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def question_words(question: QuestionAnalysis) -> set[str]:
    """The question's words and lemmas: an answer that consists of them only restates it."""
    return set(words_of(question.text)) | question.focus_lemmas
