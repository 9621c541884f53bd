"""SpanSelector: candidates of the best sentences, named features, weights, choice and confidence."""

import json
import math

import pytest
import spacy

from nlpipe.components.evidence import EvidenceSelector
from nlpipe.components.questions import analyse_question
from nlpipe.components.selection import (DEFAULT_WEIGHTS, FEATURES, DEFAULT_WEIGHTS_FILE, NO_READER_WEIGHTS_FILE, WEIGHTS_DIR, SpanSelector,
                                         candidate_features, candidate_spans, make_span_selector_v2,
                                         make_span_selector, noun_labels, softmax_share)
from nlpipe.errors import ConfigError
from nlpipe.llm.scoring import ContinuationScore


def words(text):
    return len(text.split())


def setup(en_nlp, text, question, selector=None):
    doc, analysis = en_nlp(text), analyse_question(en_nlp(question))
    evidence = EvidenceSelector()
    ranked = evidence.rank(evidence.index(doc, words), analysis)
    selector = selector or SpanSelector()
    return doc, analysis, ranked, selector.candidates(ranked, analysis), selector


def flat(candidates, logprob=-2.0):
    return [ContinuationScore(logprob, logprob, [logprob]) for _ in candidates]


def features_by_text(analysis, candidates, ranked, scores=None):
    rows = candidate_features(analysis, candidates, ranked, scores or flat(candidates))
    return {span.text: row for span, row in zip(candidates, rows)}


def test_every_feature_has_a_default_weight_and_a_description():
    assert set(DEFAULT_WEIGHTS) == set(FEATURES) and all(FEATURES.values())


def test_temperature_sharpens_or_flattens_the_confidence():
    assert softmax_share([2.0, 1.0], 0, 1.0) == pytest.approx(1 / (1 + math.exp(-1)))
    assert softmax_share([2.0, 1.0], 0, 0.5) > softmax_share([2.0, 1.0], 0, 1.0) > softmax_share([2.0, 1.0], 0, 2.0)
    assert softmax_share([2.0, 1.0], 1, 1.0) == pytest.approx(1 - softmax_share([2.0, 1.0], 0, 1.0))
    with pytest.raises(ConfigError, match="temperature: must be > 0"):
        SpanSelector(temperature=0.0)
    assert make_span_selector_v2(temperature=0.5).temperature == 0.5


def test_unknown_weight_names_are_refused():
    with pytest.raises(ConfigError, match=r"\[components.llama_qa.selector\] weights: unknown feature.*likelyhood"):
        SpanSelector(weights={"likelyhood": 1.0})


def test_registered_and_partial_weights_keep_the_defaults():
    for make in (make_span_selector, make_span_selector_v2):
        selector = make(max_sentences=2, max_candidates=5, weights={"likelihood": 3.0})
        assert (selector.max_sentences, selector.max_candidates) == (2, 5)
        assert selector.weights == {**DEFAULT_WEIGHTS, "likelihood": 3.0}
    assert spacy.registry.misc.get("nlpipe.SpanSelector.v3") is make_span_selector
    assert spacy.registry.misc.get("nlpipe.SpanSelector.v2") is make_span_selector_v2


def test_the_shipped_weights_file_is_the_one_source_of_the_defaults():
    shipped = json.loads((WEIGHTS_DIR / DEFAULT_WEIGHTS_FILE).read_text())
    assert shipped["format"] == "nlpipe.SelectorWeights.v3"
    assert shipped["weights"] == DEFAULT_WEIGHTS and set(shipped["weights"]) == set(FEATURES)
    assert shipped["lexicon"] and make_span_selector().lexicon == shipped["lexicon"]
    provenance = shipped["provenance"]
    assert provenance["data"][0]["sha256"] and provenance["model"] and provenance["l2"] > 0
    assert make_span_selector().weights == DEFAULT_WEIGHTS
    assert make_span_selector().temperature == shipped["temperature"]
    # Article-level cross-validation was recorded: folds of whole articles, each held out once.
    assert len(provenance["cross_validation"]) >= 2 and len(provenance["examples"]["articles"]) >= 10
    assert make_span_selector().threshold == shipped["answerability"]["threshold"] is not None
    # Fitted with the shipped reader's features; the fallback for other models without them.
    assert provenance["reader"] and make_span_selector().uses_reader
    assert not make_span_selector(weights_file=NO_READER_WEIGHTS_FILE).uses_reader


def test_a_weights_file_of_ones_own(tmp_path):
    fitted = {"format": "nlpipe.SelectorWeights.v1", "weights": {"likelihood": 2.0, "near": -1.0},
              "temperature": 0.7, "provenance": {}}
    path = tmp_path / "weights.json"
    path.write_text(json.dumps(fitted))
    selector = make_span_selector(weights_file=str(path), weights={"near": 0.5})
    # A feature the file does not name weighs 0: it was fitted without it.
    assert selector.weights == {**dict.fromkeys(FEATURES, 0.0), "likelihood": 2.0, "near": 0.5}
    assert selector.temperature == 0.7 and not selector.uses_reader
    for bad in ("{", json.dumps({**fitted, "format": "other"}), json.dumps({**fitted, "weights": {"near": "x"}})):
        path.write_text(bad)
        with pytest.raises(ConfigError, match="^E083"):
            make_span_selector(weights_file=str(path))
    with pytest.raises(ConfigError, match="^E083.*nowhere.json"):
        make_span_selector(weights_file=str(tmp_path / "nowhere.json"))


def test_the_retired_v1_names_its_successor():
    with pytest.raises(ConfigError, match="^E082: 'nlpipe.SpanSelector.v1' is retired.*nlpipe.SpanSelector.v3"):
        spacy.registry.misc.get("nlpipe.SpanSelector.v1")(max_sentences=3)


def test_reply_weights_make_span_questions_generate():
    assert not make_span_selector().uses_reply and SpanSelector(weights={"reply": 0.5}).uses_reply


def test_candidates_come_from_the_best_sentences_and_never_restate_the_question(en_nlp):
    text = "Cats sleep a lot. The Denver Broncos won Super Bowl 50 in 2016. Dogs bark at night."
    _, _, ranked, candidates, _ = setup(en_nlp, text, "Who won Super Bowl 50?", SpanSelector(max_sentences=1))
    texts = [c.text for c in candidates]
    assert "The Denver Broncos" in texts or "Denver Broncos" in texts
    assert "2016" in texts and "Super Bowl 50" not in texts  # the question's own words
    assert not any("Cats" in t or "Dogs" in t for t in texts)  # outside the best sentence


def test_a_measure_of_another_kind_is_never_a_candidate(en_nlp):
    text = "The Sydney Opera House covers 1.8 hectares of land. Its highest shell is 67 metres tall."
    texts = [c.text for c in setup(en_nlp, text, "How tall is it?", SpanSelector(max_candidates=50))[3]]
    assert "67 metres" in texts or "67" in texts
    assert not any(t.startswith("1.8") for t in texts)  # an area: not even the bare number
    texts = [c.text for c in setup(en_nlp, text, "How much land does it cover?", SpanSelector(max_candidates=50))[3]]
    assert any(t.startswith("1.8") for t in texts)  # "how much" is not a measurement of one kind
    # A length that is part of a rate answers "how fast".
    texts = [c.text for c in setup(en_nlp, "Objects fall at about 9.81 metres per second squared.",
                                   "How fast do objects fall?", SpanSelector(max_candidates=50))[3]]
    assert any("9.81 metres" in t for t in texts)


def test_free_form_questions_have_no_candidates(en_nlp):
    assert setup(en_nlp, "The tower was built for a fair.", "Why was the tower built?")[3] == []


def test_unit_year_and_type_features(en_nlp):
    text = "Gurian edited the Review for 44 years, starting in 1939."
    _, analysis, ranked, candidates, _ = setup(en_nlp, text, "How many years did Gurian edit the Review?")
    rows = features_by_text(analysis, candidates, ranked)
    assert rows["44"]["unit"] == 1.0 and rows["1939"]["unit"] == 0.0
    _, analysis, ranked, candidates, _ = setup(en_nlp, text, "In what year did Gurian start editing the Review?")
    rows = features_by_text(analysis, candidates, ranked)
    assert rows["1939"]["year"] == 1.0 and rows["1939"]["expected_type"] == 1.0
    assert all(row["year"] == 0.0 for t, row in rows.items() if t != "1939")


def test_unit_and_head_noun_features(en_nlp):
    text = "The Panthers gained 487 total yards and won the Driehaus Architecture Prize on their 20th anniversary."
    _, analysis, ranked, candidates, _ = setup(en_nlp, text, "How many yards did the Panthers gain?")
    assert features_by_text(analysis, candidates, ranked)["487"]["unit"] == 1.0  # "yards" governs it
    _, analysis, ranked, candidates, _ = setup(en_nlp, text, "What prize did the Panthers win?")
    rows = features_by_text(analysis, candidates, ranked)
    assert rows["the Driehaus Architecture Prize"]["head_noun"] == 1.0
    _, analysis, ranked, candidates, _ = setup(en_nlp, text, "What anniversary did the Panthers have?")
    rows = features_by_text(analysis, candidates, ranked)
    assert rows["their 20th anniversary"]["head_noun"] == 0.0  # restates the question's noun


def test_numbers_clash_with_questions_for_names_and_names_with_questions_for_numbers(en_nlp):
    text = "The Denver Broncos beat the Carolina Panthers 24–10 on February 7, 2016, gaining 194 yards."
    _, analysis, ranked, candidates, _ = setup(en_nlp, text, "Who beat the Carolina Panthers?")
    rows = features_by_text(analysis, candidates, ranked)
    assert rows["The Denver Broncos"]["type_clash"] == 0.0
    assert rows["February 7, 2016"]["type_clash"] == rows["194"]["type_clash"] == 1.0
    _, analysis, ranked, candidates, _ = setup(en_nlp, text, "How many yards did the Broncos gain?")
    rows = features_by_text(analysis, candidates, ranked)
    assert rows["194"]["type_clash"] == rows["194 yards"]["type_clash"] == 0.0
    assert rows["The Denver Broncos"]["type_clash"] == 1.0
    _, analysis, ranked, candidates, _ = setup(en_nlp, text, "What did the Broncos do?")  # no type asked
    assert all(row["type_clash"] == 0.0 for row in features_by_text(analysis, candidates, ranked).values())


def test_a_head_noun_without_a_rule_takes_its_labels_from_the_document(en_nlp):
    doc = en_nlp("Baltimore Ravens kicker Justin Tucker slipped at Levi's Stadium.")
    assert noun_labels(doc, "kicker") == ("PERSON",)  # not ORG: "Ravens" modifies "kicker"
    assert noun_labels(doc, "stadium") == ("FAC",)
    assert noun_labels(doc, "coach") == ()
    _, analysis, ranked, candidates, _ = setup(en_nlp, doc.text, "What punter slipped?")  # no rule for punter
    assert all(row["expected_type"] == 0.0 for row in features_by_text(analysis, candidates, ranked).values())
    text = "Ravens punter Sam Koch and kicker Justin Tucker slipped."
    _, analysis, ranked, candidates, _ = setup(en_nlp, text, "What punter slipped?")
    rows = features_by_text(analysis, candidates, ranked)
    assert rows["Sam Koch"]["expected_type"] == 1.0


def test_position_features_favour_the_span_next_to_the_question_words(en_nlp):
    text = "In 1950 a storm hit the coast, and many years later, in 1989, the tower opened."
    _, analysis, ranked, candidates, _ = setup(en_nlp, text, "When did the tower open?")
    rows = features_by_text(analysis, candidates, ranked)
    assert rows["1989"]["proximity"] > rows["1950"]["proximity"]
    assert rows["1989"]["near"] > rows["1950"]["near"]
    assert rows["1989"]["tree"] >= rows["1950"]["tree"]


def test_choose_follows_the_likelihood_when_all_else_is_equal(en_nlp):
    _, analysis, ranked, candidates, selector = setup(en_nlp, "Paris and Rome are cities.", "Which city?")
    scores = [ContinuationScore(-1.0 if span.text == "Rome" else -9.0, 0, [0.0]) for span in candidates]
    selector.weights = {name: 0.0 for name in FEATURES} | {"likelihood": 1.0}
    choice = selector.choose(analysis, candidates, ranked, scores)
    chosen = next(c for c in candidates if (c.start_char, c.end_char) == choice.offsets)
    assert chosen.text == "Rome" and 0.5 < choice.confidence <= 1.0


def test_without_candidates_the_reply_span_is_kept_except_for_free_form_questions(en_nlp):
    _, analysis, ranked, _, selector = setup(en_nlp, "Paris is big.", "Where is it?")
    assert selector.choose(analysis, [], ranked, [], reply_offsets=(0, 5)).offsets == (0, 5)
    why = analyse_question(en_nlp("Why is it big?"))
    assert selector.choose(why, [], ranked, [], reply_offsets=(0, 5)).offsets is None


def test_distinct_spans_merge_answers_that_normalise_alike(en_nlp):
    from nlpipe.components.selection import distinct_spans

    doc = en_nlp("The Broncos beat the Panthers. Broncos fans cheered.")
    the_broncos, panthers, broncos = doc[0:2], doc[3:5], doc[6:7]
    chosen = distinct_spans([the_broncos, broncos, panthers], [0.5, 0.3, 0.2], k=2)
    assert chosen == [((the_broncos.start_char, the_broncos.end_char), 0.5),
                      ((panthers.start_char, panthers.end_char), 0.2)]


def test_question_context_says_how_much_of_the_question_the_text_holds(en_nlp):
    from nlpipe.components.selection import question_context

    doc, analysis, ranked, _, _ = setup(en_nlp, "The Eiffel Tower is in Paris. It opened in 1889.",
                                        "When did the Eiffel Tower open?")
    said = question_context(analysis, doc, ranked)
    doc, analysis, ranked, _, _ = setup(en_nlp, "The Eiffel Tower is in Paris. It opened in 1889.",
                                        "When was the Louvre pyramid demolished?")
    unsaid = question_context(analysis, doc, ranked)
    assert said["document_coverage"] == 1.0 and said["missing_words"] == 0.0
    assert unsaid["document_coverage"] < said["document_coverage"] and unsaid["missing_words"] > 0
    assert unsaid["entity_coverage"] < 1.0 or not analysis.entities
    # A question without content words lacks nothing: whole coverage, not none ("It is in Paris."
    # asked "Where is it?" was given "no answer" for covering 0 % of nothing).
    doc, analysis, ranked, _, _ = setup(en_nlp, "It is in Paris.", "Where is it?")
    assert not analysis.focus_lemmas
    vacuous = question_context(analysis, doc, ranked)
    assert vacuous["sentence_coverage"] == vacuous["document_coverage"] == vacuous["sentence_weight"] == 1.0
    assert vacuous["missing_words"] == vacuous["missing_weight"] == 0.0
    # Words that only say what kind of answer is wanted are not missing from a text that gives
    # it: "located" (README's example "Where is it located?" was abstained on for lacking it).
    doc, analysis, ranked, _, _ = setup(en_nlp, "The Eiffel Tower is a tower in Paris, France.", "Where is it located?")
    assert analysis.focus_lemmas == {"locate"}
    located = question_context(analysis, doc, ranked)
    assert located["sentence_coverage"] == located["document_coverage"] == 1.0 and located["missing_words"] == 0.0


def test_a_question_that_negates_what_its_sentence_states_is_marked(en_nlp):
    from nlpipe.components.selection import question_context

    text = "The Broncos won Super Bowl 50. The Panthers never won a Super Bowl title."
    cases = {"Who won Super Bowl 50?": 0.0,  # no negation at all
             "Who did not win Super Bowl 50?": 1.0,  # the sentence that says it states it
             "Which team never won a Super Bowl title?": 0.0,  # the sentence negates as the question does
             "Who didn't win Super Bowl 50?": 1.0}
    for question, expected in cases.items():
        doc, analysis, ranked, _, _ = setup(en_nlp, text, question)
        assert question_context(analysis, doc, ranked)["unmatched_negation"] == expected, question


def test_a_weights_file_over_the_cap_is_refused_before_it_is_read_whole(tmp_path, monkeypatch):
    import nlpipe.files as files

    monkeypatch.setattr(files, "MAX_SMALL_FILE_BYTES", 100)
    path = tmp_path / "weights.json"
    path.write_text(json.dumps({"format": "nlpipe.SelectorWeights.v1", "weights": {"near": 1.0}, "temperature": 1.0,
                                "provenance": {"note": "x" * 200}}))
    with pytest.raises(ConfigError, match="^E083.*over 100 bytes"):
        make_span_selector(weights_file=str(path))


def test_a_device_or_deeply_nested_json_as_weights_file_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="^E083.*/dev/zero.*character device, not a regular file"):
        make_span_selector(weights_file="/dev/zero")
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ConfigError, match="^E083"):
        make_span_selector(weights_file=str(path))


def test_a_place_name_then_a_plural_name_is_a_team(en_nlp):
    """en_core_web_sm makes "Denver Broncos" a place and a product; as a noun chunk it is the
    team "Which team...?" asks for. Islands, one place entity, stay a place."""
    doc = en_nlp("The American Football Conference (AFC) champion Denver Broncos defeated the National Football "
                 "Conference (NFC) champion Carolina Panthers 24–10. They flew to the Falkland Islands.")
    labels = {}
    for span in candidate_spans(list(doc.sents)):
        labels.setdefault(span.text, set()).add(span.label_)
    assert "ORG" in labels["Denver Broncos"] and "ORG" in labels["Carolina Panthers"]
    assert "ORG" not in labels["the Falkland Islands"]
