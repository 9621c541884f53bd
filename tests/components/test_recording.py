"""Examples for fitting the span selector: every candidate of every labelled question, with its features."""

import pytest
import spacy

from nlpipe.components.llama_qa import LlamaQA
from nlpipe.components.recording import SHORTLIST, qa_component, record
from nlpipe.errors import NlpipeError
from nlpipe.squad import SquadParagraph

TOWER = SquadParagraph("The Eiffel Tower is in Paris. It opened in 1889. Gustave Eiffel's company built it.", [
    ("t1", "Where is the tower?", ["Paris", "in Paris"]),
    ("t2", "Why was it built?", ["For the fair"]),  # free-form: no candidates
    ("t3", "When did it close?", []),  # unanswerable
], title="Tower")
BOWL = SquadParagraph("Super Bowl 50 was played at Levi's Stadium in Santa Clara.", [
    ("b1", "Where was Super Bowl 50 played?", ["Levi's Stadium"])], title="Bowl")


def test_the_qa_component_is_found_or_its_absence_said(fake_nlp):
    assert isinstance(qa_component(fake_nlp), LlamaQA)
    with pytest.raises(NlpipeError, match="E101.*no llama_qa component"):
        qa_component(spacy.blank("en"))


def test_every_question_with_candidates_is_an_example_with_each_candidates_rating(scripted):
    examples = record(scripted(), [TOWER, BOWL], read=False)
    assert [(e.id, e.article, e.qtype) for e in examples] == [("t1", "Tower", "where"), ("t3", "Tower", "when"),
                                                              ("b1", "Bowl", "where")]
    where, closed, played = examples
    assert len(where.texts) == len(where.rows) == len(where.f1) == len(where.exact) > 1
    paris = where.texts.index("Paris")
    assert (where.exact[paris], where.f1[paris]) == (1.0, 1.0) and where.answerable
    assert all(0 <= f1 < 1 for i, f1 in enumerate(where.f1) if i != paris)
    assert not closed.answerable and set(closed.f1) == set(closed.exact) == {0.0}
    assert played.exact[played.texts.index("Levi's Stadium")] == 1.0


def test_the_models_scores_are_the_candidates_likelihood_features(scripted):
    [where, _] = record(scripted(score=-2.0, scores={"Paris": -0.25}), [TOWER], read=False)
    rows = dict(zip(where.texts, where.rows))
    assert rows["Paris"]["mean_logprob"] == -0.25
    assert all(row["mean_logprob"] == -2.0 for text, row in rows.items() if text != "Paris")


def test_the_shortlist_bounds_the_candidates_each_question_keeps(scripted):
    nlp = scripted()
    wide = record(nlp, [TOWER], read=False)
    assert min(len(e.texts) for e in wide) > 1
    assert [len(e.texts) for e in record(nlp, [TOWER], read=False, shortlist=1)] == [1, 1]
    assert SHORTLIST > nlp.get_pipe("llama_qa").selector.max_candidates  # wider than production's


def test_without_reader_weights_the_reader_is_read_only_when_asked(scripted):
    nlp = scripted()
    assert not nlp.get_pipe("llama_qa").selector.uses_reader
    assert [e.rows for e in record(nlp, [BOWL])] == [e.rows for e in record(nlp, [BOWL], read=False)]


def test_a_question_the_model_fails_on_is_left_out_and_the_others_kept(scripted):
    examples = record(scripted(out_of_memory=["Super Bowl"]), [TOWER, BOWL], read=False)
    assert [e.id for e in examples] == ["t1", "t3"]


def test_progress_counts_the_questions_of_the_batches_done_after_each_paragraph(scripted):
    done = []
    record(scripted(), [TOWER, BOWL, TOWER], batch_size=2, on_questions=done.append, read=False)
    assert done == [4, 4, 7]  # TOWER and BOWL (3 + 1 questions) in the first batch, TOWER in the second
