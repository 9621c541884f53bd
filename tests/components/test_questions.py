"""analyse_question on questions annotated by the real en_core_web_sm pipeline."""

import pytest
import spacy

from nlpipe.components.questions import EXPECTED_LABELS, HEAD_NOUN_LABELS, analyse_question, is_content, telling_lemmas


@pytest.fixture()
def analyse(en_nlp):
    return lambda text: analyse_question(en_nlp(text))


@pytest.mark.parametrize("question,qtype,labels", [
    ("Who designed the Eiffel Tower?", "who", EXPECTED_LABELS["who"]),
    ("Whom did the Broncos defeat?", "who", EXPECTED_LABELS["who"]),
    ("When was the Eiffel Tower opened?", "when", ("DATE", "TIME")),
    ("Where was Super Bowl 50 played?", "where", EXPECTED_LABELS["where"]),
    ("How many titles have the Broncos won?", "how many", EXPECTED_LABELS["how many"]),
    ("How much did the tower cost?", "how much", ("MONEY", "QUANTITY", "CARDINAL", "PERCENT")),
    ("How long did the construction take?", "how long", EXPECTED_LABELS["how long"]),
    ("Why did the Broncos win?", "why", ()),
    ("How did the Broncos win?", "how", ()),
    ("How did the tower get built?", "how", ()),
    ("Is Paris in France?", "yes/no", ()),
    ("Did the Broncos win the game?", "yes/no", ()),
    ("Can tourists climb the tower?", "yes/no", ()),
    ("Tell me about Paris.", "other", ()),
])
def test_question_types_and_expected_labels(analyse, question, qtype, labels):
    analysis = analyse(question)
    assert analysis.qtype == qtype
    assert analysis.expected_labels == tuple(labels)
    assert analysis.text == question


@pytest.mark.parametrize("question,qtype,head,labels", [
    ("What year did Super Bowl 50 take place?", "what", "year", ("DATE",)),
    ("Which team won Super Bowl 50?", "which", "team", ("ORG",)),
    ("Which city hosted the game?", "which", "city", ("GPE",)),
    ("What country is Paris in?", "what", "country", ("GPE",)),
    ("What is the capital of France?", "what", "capital", ("GPE",)),
    ("What is the name of the stadium in Santa Clara?", "what", "stadium", ("FAC", "ORG")),
    ("What was the final score?", "what", "score", ()),
    ("What coach left the team?", "what", "coach", ("PERSON",)),
    ("What kicker missed the field goal?", "what", "kicker", ()),  # labels from the document instead
    ("What type of rally was held?", "what", "rally", ()),
    ("What did Newton do?", "what", None, ()),
    ("Which was first?", "which", None, ()),
])
def test_what_and_which_take_labels_from_the_head_noun(analyse, question, qtype, head, labels):
    analysis = analyse(question)
    assert (analysis.qtype, analysis.head_noun, analysis.expected_labels) == (qtype, head, labels)


def test_head_noun_without_a_label_gives_no_labels(analyse):
    analysis = analyse("What color is the tower?")
    assert analysis.head_noun == "color" and "color" not in HEAD_NOUN_LABELS
    assert analysis.expected_labels == ()


def test_focus_lemmas_are_lowercased_content_lemmas(analyse):
    analysis = analyse("Who designed the Eiffel Tower?")
    assert analysis.focus_lemmas == {"design", "eiffel", "tower"}
    analysis = analyse("When was the Eiffel Tower opened?")
    assert analysis.focus_lemmas == {"open", "eiffel", "tower"}
    # wh-words, stop words and punctuation never count
    assert not analysis.focus_lemmas & {"when", "was", "be", "the", "?"}


def test_entities_named_in_the_question(analyse):
    assert analyse("Is Paris in France?").entities == ["Paris", "France"]
    assert "Super Bowl" in analyse("Which team won Super Bowl 50?").entities
    assert analyse("How tall is the tower?").entities == []


@pytest.mark.parametrize("question,verb", [
    ("Who designed the Eiffel Tower?", "design"),
    ("Where was Super Bowl 50 played?", "play"),
    ("Which city hosted the game?", "host"),
    ("Is Paris in France?", None),  # only an auxiliary
    ("Where is Levi's Stadium?", None),
])
def test_main_verb(analyse, question, verb):
    assert analyse(question).main_verb == verb


def test_empty_and_punctuation_only_questions(analyse):
    for text in ("", "?"):
        analysis = analyse(text)
        assert analysis.qtype == "other" and analysis.expected_labels == () and analysis.focus_lemmas == set()


def test_without_a_parser_the_type_still_comes_from_the_words():
    """A blank pipeline has no tags or dependencies; the wh-word table still applies."""
    nlp = spacy.blank("en")
    analysis = analyse_question(nlp("When did the game start?"))
    assert analysis.qtype == "when" and analysis.expected_labels == ("DATE", "TIME")
    assert analysis.main_verb is None and analysis.entities == []
    # without a tagger the next word is not known to be a noun: no head noun
    assert analyse_question(nlp("What year was it?")).head_noun is None


def test_is_content(en_nlp):
    doc = en_nlp("Who built the tower?")
    assert [is_content(t) for t in doc] == [False, True, False, True, False]


@pytest.mark.parametrize("question", ["How tall is it?", "How high is the tower?", "How heavy was the bell?"])
def test_measurement_questions_expect_quantities(en_nlp, question):
    analysis = analyse_question(en_nlp(question))
    assert analysis.qtype == question.split()[0].lower() + " " + question.split()[1].lower()
    assert analysis.expected_labels == ("QUANTITY", "CARDINAL")


@pytest.mark.parametrize("question,role,unit", [
    ("Who won Super Bowl 50?", ("nsubj", "win"), None),
    ("How many years did Gurian edit the Review?", None, "year"),
    ("What prize does the school give out?", ("dobj", "give"), "prize"),
    ("Where was the game played?", ("advmod", "play"), None),
])
def test_wh_role_and_unit(analyse, question, role, unit):
    analysis = analyse(question)
    if role is not None:
        assert analysis.wh_role == role
    assert analysis.unit == unit


@pytest.mark.parametrize("question,telling", [
    ("Where is the Eiffel Tower located?", {"eiffel", "tower"}),  # a place is asked: "located" tells nothing
    ("How tall is the Eiffel Tower?", {"eiffel", "tower"}),  # "330 metres" answers without "tall"
    ("What year did the tower open?", {"tower", "open"}),  # "year" is the answer's type
    ("When did the war happen?", {"war"}),
    ("Who designed the tower?", {"design", "tower"}),  # the rest is what the text must say
    ("How many people live in the city?", {"people", "live", "city"}),
])
def test_telling_lemmas_leave_out_the_words_that_only_name_the_kind_of_answer(analyse, question, telling):
    analysis = analyse(question)
    assert telling_lemmas(analysis) == telling
    assert telling_lemmas(analysis) <= analysis.focus_lemmas
