"""SQuAD answer scores with the official v1.1 normalisation."""

import pytest

from nlpipe.metrics import exact_match, f1_score, normalize_answer, scores, word_f1


def test_normalisation_follows_the_official_script():
    assert normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert normalize_answer("an apple, a pear") == "apple pear"
    assert exact_match("the Denver Broncos.", "Denver Broncos") == 1.0
    assert f1_score("Denver Broncos won", "Denver Broncos") == pytest.approx(0.8)
    assert f1_score("Carolina", "Denver Broncos") == 0.0


def test_squad_2_questions_without_an_answer_are_right_only_when_unanswered():
    assert scores("", []) == (1.0, 1.0)
    assert scores("1889", []) == (0.0, 0.0)
    assert scores("", ["Paris"]) == (0.0, 0.0)
    assert scores("the Paris", ["Paris", "in Paris"]) == (1.0, 1.0)


def test_word_f1_scores_the_words_its_caller_split_and_normalised():
    assert word_f1(["gustave", "eiffel"], ["eiffel"]) == pytest.approx(2 / 3)
    assert word_f1(["the", "tower"], ["tower"]) == pytest.approx(2 / 3)  # nothing normalised here
    assert word_f1([], ["paris"]) == 0.0 and word_f1([], []) == 1.0
