"""How an asked question becomes an answer: the generative and grounded strategies."""

import pytest

from nlpipe.components.grounding import clean_answer
from nlpipe.components.reading import Reading
from nlpipe.components.selection import FEATURES, SpanSelector
from nlpipe.components.strategies import Generative, Grounded, Reply, failure_record
from nlpipe.llm.engine import Completion, Failure, FailureKind, Request
from nlpipe.llm.fake import FakeLlama

TEXT = "The Eiffel Tower is in Paris. It opened in 1889. Gustave Eiffel's company built it."
OUT_OF_MEMORY = Failure(FailureKind.OUT_OF_MEMORY, "E021: out of memory on cpu")


@pytest.fixture(scope="module")
def qa(fake_nlp):
    return fake_nlp.get_pipe("llama_qa")


def ask(qa, question: str):
    [doc] = qa.annotate([TEXT])
    [asked] = qa.task.ask(doc, [question], FakeLlama())
    return asked


def reply(text: str, logprobs=(-1.0, -3.0)) -> Reply:
    """A reply as llama_qa makes it: the completion, its cleaned text, and the part that answers."""
    return Reply(Completion(text, list(range(len(logprobs))), list(logprobs)), clean_answer(text), clean_answer(text))


def scores_of(asked, candidates, **script):
    """The candidates' scores by a FakeLlama following `script`."""
    fake = FakeLlama(**script)
    eos = fake.tokenizer.eos_token_id
    [scores] = fake.rank([Request(asked.request.tokens, 0, [fake.encode_text(s.text) + [eos] for s in candidates])])
    return scores


def selector_weighing(qa, **weights) -> SpanSelector:
    """The pipeline's selector with `weights` set; `only=True` zeroes every other weight."""
    only = weights.pop("only", False)
    base = {name: 0.0 for name in FEATURES} if only else qa.selector.weights
    return SpanSelector(weights={**base, **weights}, temperature=qa.selector.temperature)


def test_a_reply_knows_its_failure_and_its_generated_text():
    assert reply("Paris").failure is None and reply("Paris").generated == "Paris"
    failed = Reply(OUT_OF_MEMORY)
    assert failed.failure is OUT_OF_MEMORY and failed.generated is None
    assert failure_record(OUT_OF_MEMORY) == {"type": "out_of_memory", "message": "E021: out of memory on cpu"}


def test_generative_asks_for_a_reply_and_ranks_nothing(qa):
    asked = ask(qa, "Where is the Eiffel Tower?")
    strategy = Generative()
    assert strategy.candidates(asked) == [] and strategy.needs_reply(asked, []) is True
    assert strategy.with_reply(asked, [], reply("Paris")) == []


def test_generative_places_a_reply_found_in_the_document_there(qa):
    asked = ask(qa, "Where is the Eiffel Tower?")
    answer = Generative().answer(asked, [], reply('Answer: "paris".'), None)
    assert (answer.text, answer.offsets) == ("Paris", (23, 28))  # the document's words
    assert answer.evidence.text == "The Eiffel Tower is in Paris."
    assert (answer.generated, answer.logprob) == ('Answer: "paris".', -2.0)


def test_generative_keeps_a_reply_not_in_the_document_as_it_is(qa):
    asked = ask(qa, "Where is the Eiffel Tower?")
    answer = Generative().answer(asked, [], reply("zebra quantum"), None)
    assert (answer.text, answer.offsets, answer.evidence) == ("zebra quantum", None, asked.evidence[0])
    failed = Generative().answer(asked, [], Reply(OUT_OF_MEMORY), None)
    assert failed.error == failure_record(OUT_OF_MEMORY) and failed.text == "" and failed.generated is None


def test_grounded_generates_only_for_questions_without_candidates_unless_it_weighs_replies(qa):
    asked = ask(qa, "Where is the Eiffel Tower?")
    plain, weighing = Grounded(qa.selector), Grounded(selector_weighing(qa, reply=1.0))
    candidates = plain.candidates(asked)
    assert "Paris" in [span.text for span in candidates]
    assert not plain.needs_reply(asked, candidates) and plain.needs_reply(asked, [])
    assert not plain.needs_reply(asked, [], reading=Reading([], 1.0, {}))  # the reader answers it instead
    assert weighing.needs_reply(asked, candidates)


def test_the_span_a_weighed_reply_names_joins_the_candidates_once(qa):
    asked = ask(qa, "Who built the tower?")
    weighing = Grounded(selector_weighing(qa, reply=1.0))
    candidates = [span for span in weighing.candidates(asked) if span.text != "1889"]
    named = weighing.with_reply(asked, candidates, reply("1889"))
    assert named[0].text == "1889" and named[1:] == candidates
    assert weighing.with_reply(asked, named, reply("1889")) == named  # already a candidate
    assert Grounded(qa.selector).with_reply(asked, candidates, reply("1889")) == candidates  # replies not weighed


def test_grounded_chooses_the_candidate_the_models_scores_favour(qa):
    asked = ask(qa, "Who built the tower?")
    strategy = Grounded(selector_weighing(qa, likelihood=1.0, only=True))
    candidates = strategy.candidates(asked)
    liked = candidates[-1]
    answer = strategy.answer(asked, candidates, None, scores_of(asked, candidates, score=-5.0,
                                                                 scores={liked.text: -0.1}))
    assert (answer.text, answer.offsets) == (liked.text, (liked.start_char, liked.end_char))
    assert answer.logprob == -0.1 and 0.5 < answer.confidence <= 1  # the chosen span's, as no reply was made
    assert answer.generated is None and answer.alternatives is None


def test_grounded_with_top_k_gives_distinct_alternatives_best_first(qa):
    asked = ask(qa, "Who built the tower?")
    strategy = Grounded(qa.selector, top_k=2)
    candidates = strategy.candidates(asked)
    answer = strategy.answer(asked, candidates, None, scores_of(asked, candidates))
    first, second = answer.alternatives
    assert (first["start_char"], first["end_char"]) == answer.offsets and first["confidence"] >= second["confidence"]
    assert all(TEXT[a["start_char"]:a["end_char"]] == a["text"] for a in (first, second))


def test_a_failed_ranking_is_the_answers_error(qa):
    asked = ask(qa, "Where is the Eiffel Tower?")
    strategy = Grounded(qa.selector)
    answer = strategy.answer(asked, strategy.candidates(asked), reply("Paris"), OUT_OF_MEMORY)
    assert answer.error == failure_record(OUT_OF_MEMORY)
    assert (answer.text, answer.offsets, answer.confidence) == ("", None, None)
    assert answer.evidence == asked.evidence[0] and answer.generated == "Paris"


def test_without_candidates_a_span_question_takes_the_replys_span_and_a_free_form_one_the_reply(qa):
    where = Grounded(qa.selector).answer(ask(qa, "Where is the Eiffel Tower?"), [], reply("In Paris."), None)
    assert (where.text, where.offsets, where.logprob) == ("Paris", (23, 28), -2.0)
    why = Grounded(qa.selector).answer(ask(qa, "Why was it built?"), [], reply("For the 1889 fair"), None)
    assert (why.text, why.offsets, why.generated) == ("For the 1889 fair", None, "For the 1889 fair")


def test_without_candidates_the_reader_answers_or_says_there_is_no_answer(qa):
    asked = ask(qa, "Why was it built?")
    reading = Reading([(0.7, (23, 28)), (0.2, (43, 47))], no_answer=0.1, features={})
    answer = Grounded(qa.selector, top_k=2).answer(asked, [], None, None, reading)
    assert (answer.text, answer.confidence, answer.answerable) == ("Paris", 0.7, True)
    assert [a["text"] for a in answer.alternatives] == ["Paris", "1889"]
    abstained = Grounded(qa.selector, no_answer_threshold=0.05).answer(asked, [], None, None, reading)
    assert (abstained.text, abstained.offsets, abstained.answerable, abstained.confidence) == ("", None, False, 0.1)


def test_a_measurement_question_never_gets_a_measure_of_another_kind(qa):
    # The document gives no height: neither the reader's spans nor the reply's ("Paris", "1889")
    # can say how tall the tower is, so the answer is "no answer".
    asked = ask(qa, "How tall is the tower?")
    assert qa.selector.candidates(asked.ranked, asked.question) == []
    reading = Reading([(0.7, (23, 28)), (0.2, (43, 47))], no_answer=0.1, features={})
    answer = Grounded(qa.selector, top_k=2).answer(asked, [], None, None, reading)
    assert (answer.text, answer.offsets, answer.answerable, answer.alternatives) == ("", None, False, [])
    replied = Grounded(qa.selector).answer(asked, [], reply("It opened in 1889."), None)
    assert (replied.text, replied.offsets) == ("", None)
