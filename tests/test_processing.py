"""Running a pipeline over a stream of texts: the spaCy stage, long texts in pieces, then the LLM stage."""

import pytest

from nlpipe.processing import PIECE_CHARS, annotate_long, answer_questions, llm_stage, piece_chars, process, split_text

FILLER = "Nothing happens in this sentence at all. "


@pytest.mark.parametrize("text, limit, pieces", [
    ("One. Two.", 100, ["One. Two."]),  # short enough: whole
    ("First part here.\n\nSecond part. More of it.", 30, ["First part here.\n\n", "Second part. More of it."]),
    ("Line one is here\nline two. Then more", 20, ["Line one is here\n", "line two. Then more"]),
    ("Words and words and words", 10, ["Words and ", "words and ", "words"]),
    ("abcdefghij" * 3, 10, ["abcdefghij"] * 3),  # no boundary at all: cut at the limit
])
def test_split_text_cuts_at_the_best_boundary_within_the_limit(text, limit, pieces):
    assert split_text(text, limit) == pieces


def test_split_text_keeps_every_character_in_order():
    text = (FILLER * 40 + "\n\n") * 30
    pieces = split_text(text, 1000)
    assert "".join(pieces) == text and all(0 < len(p) <= 1000 for p in pieces)


def test_the_llm_stage_starts_at_the_first_llm_component(fake_nlp, en_nlp):
    assert llm_stage(fake_nlp) == ["llama_qa"]
    assert llm_stage(en_nlp) == []
    assert piece_chars(fake_nlp) == min(PIECE_CHARS, fake_nlp.max_length)


def test_a_long_text_is_annotated_in_pieces_as_one_doc(en_nlp, monkeypatch):
    monkeypatch.setattr(en_nlp, "max_length", 200)
    text = FILLER * 5 + "The treaty was signed in Lisbon.\n\n" + FILLER * 5 + "The bridge opened in 1937."
    doc = annotate_long(en_nlp, text, disable=[])
    assert doc.text == text
    assert {(e.text, e.label_) for e in doc.ents} >= {("Lisbon", "GPE"), ("1937", "DATE")}
    assert len(list(doc.sents)) >= 12 and doc.tensor.size == 0  # the pieces' tensors are dropped


def test_process_keeps_input_order_and_each_items_context(scripted):
    items = [("Paris is in France.", ["Where is Paris?"], "first"), ("", [], "empty"),
             ("Rome is in Italy.", ["Where is Rome?", "Which country?"], {"id": 3})]
    out = list(process(scripted(), items, batch_size=2))
    assert [(doc.text, context) for doc, context in out] == [(text, context) for text, _, context in items]
    assert [[a["question"] for a in doc._.answers] for doc, _ in out] == [["Where is Paris?"], [],
                                                                         ["Where is Rome?", "Which country?"]]
    assert out[0][0]._.answers[0]["text"] == "France"


def test_a_text_longer_than_max_length_is_answered_from_all_of_it(scripted, monkeypatch):
    nlp = scripted()
    monkeypatch.setattr(nlp, "max_length", 150)
    text = FILLER * 10 + "The treaty was signed in Lisbon.\n\n" + FILLER * 10 + "The bridge opened in 1937."
    [(doc, _)] = process(nlp, [(text, ["When did the bridge open?"], None)], batch_size=1)
    [answer] = doc._.answers
    assert doc.text == text and (answer["text"], answer["start_char"]) == ("1937", text.index("1937"))


def test_answer_questions_gives_the_asked_questions_answers_in_their_order(scripted, monkeypatch):
    nlp = scripted(reply="For the fair")
    monkeypatch.setattr(nlp.get_pipe("llama_qa"), "questions", ["Where is it?"])  # answered, then left out
    answers = answer_questions(nlp, "The Eiffel Tower is in Paris. It opened in 1889.",
                               ["Why was it built?", "When did it open?"])
    assert [(a["question"], a["text"]) for a in answers] == [("Why was it built?", "For the fair"),
                                                             ("When did it open?", "1889")]


def test_answer_questions_without_a_qa_component_answers_nothing(en_nlp):
    assert answer_questions(en_nlp, "Paris is in France.", ["Where is Paris?"]) == []
