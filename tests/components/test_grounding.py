"""Tying a model's reply back to a span of the document."""

import pytest
import spacy
from spacy.tokens import Doc

from nlpipe.components.grounding import answer_core, clean_answer, find_phrase, ground
from nlpipe.components.selection import best_candidate, candidate_spans, entity_lists
from nlpipe.components.questions import QuestionAnalysis, analyse_question

SUPER_BOWL = ("Super Bowl 50 was played on February 7, 2016, at Levi's Stadium in Santa Clara, California. "
              "The Denver Broncos defeated the Carolina Panthers 24–10.")


@pytest.mark.parametrize("generated,expected", [
    ("Paris", "Paris"),
    ("Paris.", "Paris"),
    ("  Paris, France.  ", "Paris, France"),
    ("Answer: Paris", "Paris"),
    ("answer - Paris", "Paris"),
    ("The answer is Paris.", "Paris"),
    ("The short answer: 1889", "1889"),
    ("Short answer: Gustave Eiffel", "Gustave Eiffel"),
    ('"Denver Broncos"', "Denver Broncos"),
    ("'Denver Broncos'", "Denver Broncos"),
    ("“Denver Broncos”", "Denver Broncos"),
    ("`Levi's Stadium`", "Levi's Stadium"),
    ("\n\nParis\nThe tower is in Paris because...", "Paris"),
    ("  \n  Santa Clara!\n\nMore text.", "Santa Clara"),
    ("", ""),
    ("   \n  ", ""),
])
def test_clean_answer(generated, expected):
    assert clean_answer(generated) == expected


@pytest.mark.parametrize("generated", ['"Paris".', 'The answer is "Paris".', "'Paris'."])
def test_clean_answer_quote_then_period(generated):
    assert clean_answer(generated) == "Paris"


@pytest.fixture(scope="module")
def super_bowl(en_nlp):
    return en_nlp(SUPER_BOWL)


def text_at(doc, offsets):
    return doc.text[offsets[0]:offsets[1]] if offsets else None


def test_find_phrase_is_case_insensitive(super_bowl):
    assert text_at(super_bowl, find_phrase("levi's stadium", super_bowl, [])) == "Levi's Stadium"
    assert text_at(super_bowl, find_phrase("DENVER BRONCOS", super_bowl, [])) == "Denver Broncos"


def test_find_phrase_respects_word_boundaries(super_bowl):
    assert find_phrase("1", super_bowl, []) is None  # not inside 2016 or 10
    assert find_phrase("201", super_bowl, []) is None
    assert find_phrase("Super Bowl 5", super_bowl, []) is None
    assert find_phrase("Bronco", super_bowl, []) is None
    start, end = find_phrase("2016", super_bowl, [])
    assert SUPER_BOWL[start:end] == "2016" and start == SUPER_BOWL.index("2016")
    assert text_at(super_bowl, find_phrase("24–10", super_bowl, [])) == "24–10"


def test_find_phrase_phrase_with_punctuation_at_the_edges(super_bowl):
    assert text_at(super_bowl, find_phrase("California.", super_bowl, [])) == "California."
    assert text_at(super_bowl, find_phrase("February 7,", super_bowl, [])) == "February 7,"


def test_find_phrase_allows_any_whitespace_between_words():
    doc = spacy.blank("en")("The tower stands in\n  Santa   Clara,\tCalifornia today.")
    start, end = find_phrase("Santa Clara, California", doc, [])
    assert doc.text[start:end] == "Santa   Clara,\tCalifornia"
    start, end = find_phrase("in  Santa\nClara", doc, [])
    assert doc.text[start:end] == "in\n  Santa   Clara"


def test_find_phrase_searches_the_evidence_first():
    doc = spacy.blank("en")("Paris is big. Rome is old. Paris is old.")
    third = doc.char_span(doc.text.index("Paris is old"), len(doc.text))
    assert find_phrase("Paris", doc, [third]) == (doc.text.rindex("Paris"), doc.text.rindex("Paris") + 5)
    assert find_phrase("Paris", doc, []) == (0, 5)
    rome = doc.char_span(14, 26)
    assert rome.text == "Rome is old."
    assert find_phrase("Paris", doc, [rome]) == (0, 5)  # falls back to the whole doc


@pytest.mark.parametrize("phrase", ["", "   ", "Tokyo"])
def test_find_phrase_nothing(super_bowl, phrase):
    assert find_phrase(phrase, super_bowl, list(super_bowl.sents)) is None


@pytest.mark.parametrize("reply,core", [
    ("The Eiffel Tower is located in Paris, France.", "in Paris, France"),
    ("It was opened in 1889", "in 1889"),
    ("The Broncos won the game", "the game"),
    ("Gustave Eiffel", "Gustave Eiffel"),  # no verb: unchanged
    ("Paris", "Paris"),
])
def test_answer_core(en_nlp, reply, core):
    assert answer_core(en_nlp(reply)) == core


def test_answer_core_starts_with_the_prepositional_phrase(en_nlp):
    assert answer_core(en_nlp("The Eiffel Tower is located in Paris, France.")).startswith("in Paris")


def test_answer_core_of_an_empty_reply(en_nlp):
    assert answer_core(en_nlp("")) == ""


def test_ground_exact_phrase(super_bowl, en_nlp):
    question = analyse_question(en_nlp("Where was Super Bowl 50 played?"))
    for reply in ("Levi's Stadium", "levi's stadium", "Santa Clara, California"):
        offsets = ground(reply, reply, super_bowl, list(super_bowl.sents), question)
        assert offsets is not None
        assert text_at(super_bowl, offsets).lower() in reply.lower()
    offsets = ground("Levi's Stadium", "Levi's Stadium", super_bowl, list(super_bowl.sents), question)
    assert offsets == (SUPER_BOWL.index("Levi's"), SUPER_BOWL.index("Levi's") + len("Levi's Stadium"))


def test_ground_narrows_a_phrase_to_the_expected_entity(super_bowl, en_nlp):
    question = analyse_question(en_nlp("When was Super Bowl 50 played?"))
    reply = "on February 7, 2016, at Levi's Stadium"
    assert text_at(super_bowl, ground(reply, reply, super_bowl, list(super_bowl.sents), question)) == (
        "February 7, 2016")


def test_ground_keeps_an_exact_reply_that_ner_splits(super_bowl, en_nlp):
    question = analyse_question(en_nlp("Who won Super Bowl 50?"))
    offsets = ground("Denver Broncos", "Denver Broncos", super_bowl, list(super_bowl.sents), question)
    assert text_at(super_bowl, offsets) == "Denver Broncos"


def test_ground_uses_the_core_when_the_reply_is_not_in_the_doc(super_bowl, en_nlp):
    question = analyse_question(en_nlp("Where was Super Bowl 50 played?"))
    reply = "Super Bowl 50 was played at Levi's Stadium"
    core = answer_core(en_nlp(reply))
    assert core == "at Levi's Stadium"
    assert find_phrase(reply, super_bowl, []) is None
    assert text_at(super_bowl, ground(reply, core, super_bowl, list(super_bowl.sents), question)) == (
        "Levi's Stadium")


def test_ground_ignores_a_reply_that_only_restates_the_question(super_bowl, en_nlp):
    question = analyse_question(en_nlp("Where was Super Bowl 50 played?"))
    assert ground("Super Bowl 50", "Super Bowl 50", super_bowl, list(super_bowl.sents), question) is None


def test_ground_falls_back_to_the_best_candidate(super_bowl, en_nlp):
    question = analyse_question(en_nlp("Where was Super Bowl 50 played?"))
    offsets = ground("the stadium of Levi", "the stadium of Levi", super_bowl, list(super_bowl.sents), question)
    assert text_at(super_bowl, offsets) == "Levi's Stadium"


def test_ground_prefers_the_expected_label_on_ties():
    """Two candidates overlap the reply equally; the one whose label the question expects wins."""
    nlp = spacy.blank("en")
    doc = Doc(nlp.vocab, words=["Washington", "met", "Adams", "in", "Washington", "."],
              ents=["B-PERSON", "O", "B-PERSON", "O", "B-GPE", "O"])
    evidence = [doc[:]]
    where = QuestionAnalysis(text="Where did they meet?", qtype="where", expected_labels=("GPE", "LOC"))
    who = QuestionAnalysis(text="Who met Adams?", qtype="who", expected_labels=("PERSON",),
                           focus_lemmas={"meet", "adams"}, entities=["Adams"])
    reply = "Washington D.C."  # not a phrase of the doc
    assert ground(reply, reply, doc, evidence, where) == (doc[4].idx, doc[4].idx + len("Washington"))
    assert ground(reply, reply, doc, evidence, who) == (0, len("Washington"))


def test_best_candidate_ignores_question_words(en_nlp):
    """A reply that restates the question matches the answer, not the restated part."""
    doc = en_nlp("Levi's Stadium hosted the game. The game was won by the Denver Broncos.")
    question = analyse_question(en_nlp("Who won the game?"))
    span = best_candidate("the game was won by Denver", list(doc.sents), question)
    assert span is not None and span.text == "the Denver Broncos"


def test_ground_returns_none_when_nothing_overlaps(super_bowl, en_nlp):
    question = analyse_question(en_nlp("Where was Super Bowl 50 played?"))
    assert ground("zebra quantum", "zebra quantum", super_bowl, list(super_bowl.sents), question) is None
    assert ground("", "", super_bowl, list(super_bowl.sents), question) is None
    assert ground("Paris", "Paris", super_bowl, [], question) is None


def test_candidate_spans(super_bowl):
    texts = [s.text for s in candidate_spans(list(super_bowl.sents))]
    assert "Levi's Stadium" in texts and "February 7, 2016" in texts
    assert "50" in texts  # numbers too


def test_a_number_inside_an_entity_keeps_its_label(en_nlp):
    doc = en_nlp("The Panthers gained 487 yards in the game.")
    assert [(e.text, e.label_) for e in doc.ents if "487" in e.text] == [("487 yards", "QUANTITY")]
    assert ("487", "QUANTITY") in [(s.text, s.label_) for s in candidate_spans(list(doc.sents))]


def test_lists_of_entities_are_candidates(en_nlp):
    doc = en_nlp("CBS sent Jim Nantz, Phil Simms and Tracy Wolfson to Santa Clara, California.")
    lists = [(s.text, s.label_) for s in entity_lists(doc[:])]
    assert ("Jim Nantz, Phil Simms and Tracy Wolfson", "PERSON") in lists
    assert ("Santa Clara, California", "GPE") in lists
    assert not any(text.startswith("CBS") for text, _ in lists)  # "sent" is no list joiner
    assert {text for text, _ in lists} <= {s.text for s in candidate_spans([doc[:]])}
    # without a parser there are no noun chunks, but entities still count
    doc = Doc(spacy.blank("en").vocab, words=["Rome", "is", "old"], ents=["B-GPE", "O", "O"])
    assert [s.text for s in candidate_spans([doc[:]])] == ["Rome"]
