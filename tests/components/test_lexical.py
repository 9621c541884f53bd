"""Lexical features of candidate spans, on real parses."""

from nlpipe.components.lexical import lexical_features
from nlpipe.components.questions import analyse_question


def features_of(nlp, question: str, text: str, answer: str) -> list[str]:
    doc = nlp(text)
    start = text.index(answer)
    return lexical_features(analyse_question(nlp(question)), doc.char_span(start, start + len(answer)))


def test_a_span_is_described_with_the_question_it_answers(en_nlp):
    found = features_of(en_nlp, "Who designed the tower?",
                        "The Eiffel Tower is in Paris. It was designed by the engineer Gustave Eiffel.", "Gustave Eiffel")
    assert "entity=PERSON|q=who" in found
    assert "before=engineer|q=who" in found and "after=.|q=who" in found
    # Gustave Eiffel: apposition to "engineer", object of "by", the agent of "designed" (the
    # question's verb): three edges up the tree, none down.
    assert "path=appos^pobj^agent|" in found and "path=appos^pobj^agent||q=who" in found


def test_without_a_question_word_nearby_the_path_says_none(en_nlp):
    found = features_of(en_nlp, "When did the bridge open?", "Paris is large. It had 2 million people in 1990.", "1990")
    assert "path=-" in found


def test_a_pipeline_without_sentences_still_gets_features(blank_nlp):
    import spacy

    nlp = spacy.blank("en")
    doc = nlp("The tower was designed by Gustave Eiffel")
    question = analyse_question(nlp("Who designed the tower?"))
    found = lexical_features(question, doc[5:7])
    assert "entity=-|q=who" in found and any(f.startswith("path=") for f in found)
