"""EvidenceSelector: ranking by lemma/entity overlap, document order, budgets, long sentences."""

import pytest
import spacy
from spacy.tokens import Doc

from nlpipe.components.evidence import EvidenceSelector, make_evidence_selector
from nlpipe.components.questions import QuestionAnalysis, analyse_question

TEXT = ("The Amazon rainforest covers much of South America. "
        "Many birds live in the canopy of the forest. "
        "The majority of the forest is contained within Brazil. "
        "Tourists often visit in the dry season. "
        "Scientists study the rivers every year.")


def words(text: str) -> int:
    return len(text.split())


@pytest.fixture(scope="module")
def doc(en_nlp):
    return en_nlp(TEXT)


def sentences(doc):
    return [s.text.strip() for s in doc.sents]


def select(selector, doc, question, en_nlp, count_tokens=words):
    analysis = analyse_question(en_nlp(question))
    return [s.text.strip() for s in selector.select(selector.index(doc, count_tokens), analysis)]


def test_sentence_with_overlapping_lemmas_ranks_first(doc, en_nlp):
    assert len(sentences(doc)) == 5
    chosen = select(EvidenceSelector(max_sentences=1), doc, "Which country contains most of the forest?", en_nlp)
    assert chosen == ["The majority of the forest is contained within Brazil."]
    chosen = select(EvidenceSelector(max_sentences=1), doc, "What do scientists study?", en_nlp)
    assert chosen == ["Scientists study the rivers every year."]


def test_entity_named_in_the_question_counts(doc, en_nlp):
    chosen = select(EvidenceSelector(max_sentences=1), doc, "What is in Brazil?", en_nlp)
    assert chosen == ["The majority of the forest is contained within Brazil."]


def test_expected_label_breaks_ties():
    """No lemma overlap anywhere: the sentence holding an entity of the expected type wins."""
    nlp = spacy.blank("en")
    doc = Doc(nlp.vocab, words=["Cats", "sleep", ".", "It", "rained", "in", "1999", "."],
              sent_starts=[True, False, False, True, False, False, False, False],
              ents=["O", "O", "O", "O", "O", "O", "B-DATE", "O"])
    question = QuestionAnalysis(text="When?", qtype="when", expected_labels=("DATE", "TIME"))
    selector = EvidenceSelector(max_sentences=1)
    assert [s.text for s in selector.select(selector.index(doc, words), question)] == ["It rained in 1999 ."]
    no_labels = QuestionAnalysis(text="When?", qtype="when")
    assert [s.text for s in selector.select(selector.index(doc, words), no_labels)] == ["Cats sleep ."]


def test_selected_sentences_come_in_document_order(doc, en_nlp):
    chosen = select(EvidenceSelector(max_sentences=2), doc, "What do scientists study in the forest of Brazil?",
                    en_nlp)
    assert chosen == ["The majority of the forest is contained within Brazil.",
                      "Scientists study the rivers every year."]
    everything = select(EvidenceSelector(max_sentences=10), doc, "Scientists?", en_nlp)
    assert everything == sentences(doc)


@pytest.mark.parametrize("max_sentences", [0, 1, 2, 3, 5])
def test_max_sentences(doc, en_nlp, max_sentences):
    chosen = select(EvidenceSelector(max_sentences=max_sentences), doc, "Where is the forest?", en_nlp)
    assert len(chosen) == max_sentences


def test_max_tokens_budget(doc, en_nlp):
    assert [words(s) for s in sentences(doc)] == [8, 9, 9, 7, 6]
    for budget, n_chosen in ((9, 1), (17, 2), (24, 3), (100, 5)):
        selector = EvidenceSelector(max_sentences=5, max_tokens=budget)
        chosen = select(selector, doc, "Where is the forest?", en_nlp)
        assert set(chosen) <= set(sentences(doc))
        assert sum(words(s) for s in chosen) <= budget
        assert len(chosen) == n_chosen, budget
    # a budget smaller than every sentence still yields windows cut from them
    selector = EvidenceSelector(max_sentences=5, max_tokens=3)
    chosen = select(selector, doc, "Which country contains the forest?", en_nlp)
    assert chosen and sum(words(s) for s in chosen) <= 3


def test_budget_skips_a_big_unit_for_smaller_ones(en_nlp):
    """A unit that does not fit the remaining budget is skipped, a later smaller one is taken."""
    doc = en_nlp("Brazil has rivers. Brazil has many long and wide rivers everywhere. Brazil is big.")
    selector = EvidenceSelector(max_sentences=3, max_tokens=10)
    chosen = select(selector, doc, "What rivers does Brazil have?", en_nlp)
    assert chosen == ["Brazil has rivers.", "Brazil is big."]


def test_very_long_sentence_is_split_into_windows_that_fit():
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    doc = nlp("Short one. " + " ".join(f"w{i}" for i in range(100)) + " end. Last one.")
    selector = EvidenceSelector(max_sentences=50, max_tokens=10)
    index = selector.index(doc, words)
    assert len(index.units) > 3
    assert all(unit.n_tokens <= 10 for unit in index.units)
    assert all(unit.n_tokens == words(unit.span.text) for unit in index.units)
    # consecutive windows cover the long sentence exactly once
    long_sentence = list(doc.sents)[1]
    windows = [u.span for u in index.units if long_sentence.start <= u.span.start < long_sentence.end]
    assert windows[0].start == long_sentence.start and windows[-1].end == long_sentence.end
    assert all(a.end == b.start for a, b in zip(windows, windows[1:]))
    question = QuestionAnalysis(text="w55?", qtype="other", focus_lemmas={"w55"})
    chosen = selector.select(index, question)
    assert any("w55" in s.text for s in chosen)
    assert sum(words(s.text) for s in chosen) <= 10


def test_windows_fit_when_token_density_is_uneven():
    nlp = spacy.blank("en")
    # 30 one-token words, then 30 words that spaCy splits in two ("x" ",")
    doc = nlp(" ".join(["a"] * 30 + ["x,"] * 30))
    index = EvidenceSelector(max_tokens=10).index(doc, words)
    assert all(unit.n_tokens <= 10 for unit in index.units)


def test_doc_without_sentence_annotation_is_one_unit():
    nlp = spacy.blank("en")
    doc = nlp("Paris is in France. Rome is in Italy.")
    assert not doc.has_annotation("SENT_START")
    selector = EvidenceSelector()
    index = selector.index(doc, words)
    assert len(index.units) == 1 and index.units[0].span.text == doc.text
    question = QuestionAnalysis(text="Where is Rome?", qtype="where", focus_lemmas={"rome"})
    assert [s.text for s in selector.select(index, question)] == [doc.text]


def test_empty_doc_has_no_units():
    doc = spacy.blank("en")("")
    selector = EvidenceSelector()
    index = selector.index(doc, words)
    assert index.units == []
    assert selector.select(index, QuestionAnalysis(text="?", qtype="other")) == []


def test_idf_favours_rare_lemmas(en_nlp):
    doc = en_nlp("The forest is green. The forest is big. The river is in the forest.")
    index = EvidenceSelector().index(doc, words)
    assert index.idf["river"] > index.idf["forest"] > 0


def test_registered_factory():
    selector = make_evidence_selector(max_sentences=2, max_tokens=50, entity_weight=2.0, label_weight=0.1)
    assert (selector.max_sentences, selector.max_tokens, selector.entity_weight, selector.label_weight) == (
        2, 50, 2.0, 0.1)
    assert spacy.registry.misc.get("nlpipe.EvidenceSelector.v1") is make_evidence_selector
