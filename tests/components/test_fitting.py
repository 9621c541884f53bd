"""The selector's fitting code on synthetic examples: it finds the feature that marks the answer,
the inputs that mark an unanswerable question, and holds whole articles out."""

import dataclasses
import json

import pytest
import torch

from nlpipe.components.fitting import (MAX_HAS_ANSWER_LOSS, Fitted, Prediction, check_writable, cross_validate, fit,
                                       fit_answerability, fit_temperature, fit_threshold, fit_weights, folds_of, predict,
                                       ranking, rate_answerability, summarise, write_weights)
from nlpipe.components.recording import Example
from nlpipe.components.selection import FEATURES, make_span_selector, read_weights
from nlpipe.errors import ConfigError, InputError

NAMES = ["likelihood", "near", "length"]
CONTEXT = {"sentence_coverage": 1.0, "document_coverage": 1.0, "entity_coverage": 1.0, "missing_words": 0.0,
           "sentence_weight": 1.0, "missing_weight": 0.0}


def synthetic(n_questions: int, seed: int = 0, article: str = "A", unanswerable: bool = False) -> list[Example]:
    """Questions whose right candidate has "near" = 1 (others 0), noise in the other features.
    Unanswerable ones have no right candidate, and the document lacks the question's words."""
    generator = torch.Generator().manual_seed(seed)
    examples = []
    for q in range(n_questions):
        n, right = 5, q % 5
        noise = torch.rand(n, len(NAMES), generator=generator)
        rows = []
        for k in range(n):
            row = dict.fromkeys(FEATURES, 0.0)
            row.update(likelihood=float(noise[k, 0]), length=float(noise[k, 2]),
                       near=float(k == right and not unanswerable))
            rows.append(row)
        texts = [f"candidate {k}" for k in range(n)]
        references = [] if unanswerable else [texts[right]]
        context = {**CONTEXT, "document_coverage": 0.2, "missing_words": 0.8, "missing_weight": 0.8} \
            if unanswerable else CONTEXT
        hits = [0.0 if unanswerable else float(k == right) for k in range(n)]
        examples.append(Example(f"{article}{q}{'-noans' if unanswerable else ''}", article, f"q{q}", "what",
                                references, texts, rows, context, hits, hits))
    return examples


def test_fit_puts_the_weight_on_the_feature_that_marks_the_answer():
    weights, _ = fit_weights(synthetic(40), NAMES, l2=0.01)
    assert weights[1] > 1.0 and weights[1] > abs(weights[0]) + abs(weights[2])
    chosen, scores = ranking(synthetic(1, seed=5)[0], weights, NAMES, max_candidates=3)
    assert chosen == 0 and scores[0] == max(scores)


def test_ranking_shortlists_without_the_likelihood_as_production_does():
    example = synthetic(1)[0]
    for k, row in enumerate(example.rows):  # the right one has the worst prior but a huge likelihood
        row.update(near=0.0, length=1.0 - k / 10, likelihood=10.0 if k == 4 else 0.0)
    weights = torch.tensor([1.0, 0.0, 1.0])
    assert ranking(example, weights, NAMES, max_candidates=2)[0] in (0, 1)  # shortlisted out
    assert ranking(example, weights, NAMES, max_candidates=5)[0] == 4


def test_answerability_separates_unanswerable_questions_and_fits_a_threshold():
    examples = synthetic(40) + synthetic(40, seed=1, unanswerable=True)
    fitted = fit(examples, NAMES, l2=0.01, max_candidates=5)
    assert fitted.answerability and 0 < fitted.threshold < 1
    predictions = predict(synthetic(10, seed=2) + synthetic(10, seed=3, unanswerable=True), fitted, 5)
    assert all(p.squad2(fitted.threshold) == (1.0, 1.0) for p in predictions)
    # Without a threshold every question is answered, so an unanswerable one is always wrong.
    assert all(p.squad2(None) == (0.0, 0.0) for p in predictions if not p.example.answerable)


def test_the_threshold_gives_up_no_more_answerable_f1_than_allowed():
    """Each step up abstains on two unanswerable questions for one answerable one, up to 0.5:
    half and half, the best cut is 0.5, but it may cost answerable F1 only so much."""
    answerable = [Prediction(e, e.f1.index(1.0), [1.0], {}, answerable=(k + 0.5) / 100)
                  for k, e in enumerate(synthetic(100))]
    unanswerable = [Prediction(e, 0, [1.0], {}, answerable=(k + 0.5) / 200)
                    for k, e in enumerate(synthetic(100, seed=1, unanswerable=True))]
    predictions = answerable + unanswerable
    for allowed, expected in ((0.04, 0.04), (0.10, 0.10), (0.8, 0.5)):
        threshold = fit_threshold(predictions, allowed)
        lost = 1 - sum(p.squad2(threshold)[1] for p in answerable) / len(answerable)
        assert lost <= allowed + 1e-9 and threshold == pytest.approx(expected, abs=0.011)
    assert fit_threshold(predictions) == pytest.approx(MAX_HAS_ANSWER_LOSS, abs=0.011)  # the fit's own bound


def test_answerability_does_not_depend_on_the_units_of_its_inputs():
    """Inputs range from shares to summed scores: the fit standardises them, so the same
    evidence in other units gives the same probabilities (and no input needs rescaling first)."""
    examples = synthetic(30) + synthetic(30, seed=1, unanswerable=True)
    for k, example in enumerate(examples):  # a second, weaker signal besides the coverage
        example.context["sentence_weight"] = (0.7 if example.answerable else 0.4) + 0.05 * (k % 5)
    predictions = predict(examples, Fitted(NAMES, torch.tensor([0.0, 2.0, 0.0])), 5)
    model = fit_answerability(predictions)
    for p in predictions:
        p.inputs = {**p.inputs, "missing_words": 1000 * p.inputs["missing_words"],
                    "sentence_weight": p.inputs["sentence_weight"] / 1000}
    rescaled = fit_answerability(predictions)
    assert rescaled["missing_words"] == pytest.approx(model["missing_words"] / 1000, rel=1e-3, abs=1e-6)
    assert rescaled["sentence_weight"] == pytest.approx(model["sentence_weight"] * 1000, rel=1e-3, abs=1e-3)
    assert rescaled["bias"] == pytest.approx(model["bias"], abs=1e-3)


def test_answerability_is_calibrated_at_the_mix_it_was_fitted_on():
    """Fitted class-balanced, the chance still says how often there is an answer: with three
    answerable questions to one unanswerable, whose candidates look alike, and one weak input,
    about 0.75 on average (the balanced fit's own chances average about 0.5); and it decides
    every question as the balanced model with its own threshold does."""
    examples = synthetic(90) + synthetic(30, seed=1)
    generator = torch.Generator().manual_seed(0)
    for k, example in enumerate(examples):
        if k >= 90:
            example.references.clear()  # unanswerable, but its candidates look as the others'
        example.context = {**CONTEXT, "sentence_weight": float(torch.rand(1, generator=generator))
                           + (0.3 if k < 90 else 0.0)}
    fitted = fit(examples, NAMES, l2=0.01, max_candidates=5)
    calibrated = predict(examples, fitted, 5)
    chances = [p.answerable for p in calibrated]
    assert sum(chances) / len(chances) == pytest.approx(0.75, abs=0.03)
    assert max(chances) - min(chances) > 0.2  # and it still ranks by the input
    balanced = predict(examples, dataclasses.replace(fitted, answerability={}), 5)
    rate_answerability(balanced, fit_answerability(balanced))
    assert sum(p.answerable for p in balanced) / len(balanced) < 0.65  # a half-and-half mix's chances
    cut = fit_threshold(balanced)
    assert 0 < cut < fitted.threshold < 1
    assert [p.answerable < fitted.threshold for p in calibrated] == [p.answerable < cut for p in balanced]


def test_answerable_only_data_fits_no_answerability_model():
    fitted = fit(synthetic(20), NAMES, l2=0.01, max_candidates=5)
    assert fitted.answerability == {} and fitted.threshold is None


def test_cross_validation_holds_out_whole_articles():
    examples = synthetic(20, article="Normans") + synthetic(20, seed=1, article="Sky")
    assert [name for name, _ in folds_of(examples)] == ["Normans", "Sky"]
    held_out = cross_validate(examples, NAMES, l2=0.01, max_candidates=5)
    assert {name: {p.example.article for p in predictions} for name, (predictions, _) in held_out.items()} == {
        "Normans": {"Normans"}, "Sky": {"Sky"}}
    rows = summarise(held_out)
    assert [r["answerable"] for r in rows] == [20, 20] and all(r["f1"] > 90 for r in rows)


def test_one_article_is_cross_validated_in_random_folds():
    folds = folds_of(synthetic(30), folds=3)
    assert [len(rows) for _, rows in folds] == [10, 10, 10]
    assert sorted(i for _, rows in folds for i in rows) == list(range(30))


def test_temperature_fits_on_predictions():
    examples = synthetic(20)
    fitted = Fitted(NAMES, fit_weights(examples, NAMES, l2=0.01)[0])
    temperature = fit_temperature(predict(examples, fitted, 5))
    assert 0.2 <= temperature <= 3.0


def test_a_written_weights_file_is_what_the_selector_reads(tmp_path):
    path = tmp_path / "weights.json"
    answerability = {"bias": 0.5, "document_coverage": 2.0}
    write_weights(path, Fitted(NAMES, torch.tensor([0.5, 1.5, -0.25]), 0.8, answerability, 0.4), list(FEATURES),
                  {"data": [{"sha256": "abc"}]})
    assert json.loads(path.read_text())["provenance"]["data"][0]["sha256"] == "abc"
    assert read_weights(path)["weights"]["near"] == 1.5 and read_weights(path)["weights"]["year"] == 0.0
    selector = make_span_selector(weights_file=str(path))
    assert selector.weights["near"] == 1.5 and selector.temperature == pytest.approx(0.8)
    assert selector.answerability == answerability and selector.threshold == pytest.approx(0.4)
    assert make_span_selector(weights_file=str(path), no_answer_threshold=0.9).threshold == pytest.approx(0.9)
    assert make_span_selector(weights_file=str(path), answerability=False).threshold is None
    # Written beside the file and moved into place: nothing half-written is left.
    assert [p.name for p in tmp_path.iterdir()] == ["weights.json"]


def test_an_output_that_cannot_be_written_is_refused_up_front(tmp_path):
    check_writable(tmp_path / "weights.json")
    assert not list(tmp_path.iterdir())  # the probe leaves nothing
    with pytest.raises(InputError, match="^E023: .*missing.*No such file"):
        check_writable(tmp_path / "missing" / "weights.json")
    with pytest.raises(InputError, match="^E023: .*it is a folder"):
        check_writable(tmp_path)


def test_a_v1_weights_file_answers_every_question():
    selector = make_span_selector(weights_file="span_selector.v1.json")
    assert selector.threshold is None
    with pytest.raises(ConfigError, match="E084.*no_answer_threshold.*nlpipe fit"):
        make_span_selector(weights_file="span_selector.v1.json", no_answer_threshold=0.5)


def test_pipelines_qa_cfg_uses_the_package_defaults():
    from nlpipe.components.selection import DEFAULT_TEMPERATURE, DEFAULT_WEIGHTS
    from nlpipe.config import load_config

    from ..conftest import REPO

    selector = load_config(REPO / "pipelines" / "qa.cfg")["components"]["llama_qa"]["selector"]
    built = make_span_selector(**{k: v for k, v in selector.items() if not k.startswith("@")})
    assert selector["@misc"] == "nlpipe.SpanSelector.v3"
    assert built.weights == DEFAULT_WEIGHTS and built.temperature == DEFAULT_TEMPERATURE



TOWER = ("The Eiffel Tower in Paris was designed by Gustave Eiffel's company and opened in March 1889 "
         "for the World's Fair. It is 330 metres tall, and about seven million people visit it each year.")
TOWER_QUESTIONS = ["Who designed the tower?", "When did it open?", "How tall is it?", "How many people visit it?"]


def recorded_and_answered(nlp) -> tuple[dict, dict]:
    from nlpipe.components.recording import record
    from nlpipe.squad import SquadParagraph

    paragraph = SquadParagraph(TOWER, [(str(i), q, ["x"]) for i, q in enumerate(TOWER_QUESTIONS)], "Tower")
    examples = {e.question: e for e in record(nlp, [paragraph])}
    doc = nlp.make_doc(TOWER)
    doc._.questions = TOWER_QUESTIONS
    return examples, {a["question"]: a["text"] for a in nlp(doc)._.answers}


def assert_replayed(nlp, examples: dict, answers: dict) -> None:
    from nlpipe.components.recording import qa_component

    qa = qa_component(nlp)
    names = list(FEATURES)
    weights = torch.tensor([qa.selector.weights[name] for name in names])
    assert examples
    for question, example in examples.items():
        chosen, _ = ranking(example, weights, names, qa.selector.max_candidates, qa.selector.lexicon)
        assert example.texts[chosen] == answers[question], question


def test_fitting_replays_the_span_the_selector_answers_with(qa_nlp):
    """One ranking rule: fitting.ranking, on the candidates and features recorded from the
    pipeline, chooses the span the pipeline itself answers with."""
    assert_replayed(qa_nlp, *recorded_and_answered(qa_nlp))


def test_fitting_replays_the_selector_with_a_lexicon(qa_nlp, qa_overrides, tmp_path):
    """The lexicon counts alike in both: every lexical feature of the recorded candidates gets a
    large random weight, so the choices turn on it (some answers change), and still match."""
    from nlpipe.config import build_pipeline, load_config

    from ..conftest import REPO

    examples, plain_answers = recorded_and_answered(qa_nlp)
    features = sorted({f for e in examples.values() for strings in e.lexical for f in strings})
    generator = torch.Generator().manual_seed(0)
    lexicon = dict(zip(features, (torch.randn(len(features), generator=generator) * 5).tolist()))
    shipped = read_weights("span_selector.v2.json")  # without reader features: the tiny model has no reader
    path = tmp_path / "weights.json"
    write_weights(path, Fitted(list(FEATURES), torch.tensor([shipped["weights"][n] for n in FEATURES]),
                               shipped["temperature"], lexicon=lexicon), list(FEATURES), {})
    nlp = build_pipeline(load_config(REPO / "pipelines" / "qa.cfg", {
        **qa_overrides, "components.llama_qa.selector.weights_file": str(path)}))
    examples, answers = recorded_and_answered(nlp)
    assert answers != plain_answers
    assert_replayed(nlp, examples, answers)


def lexical_examples(n_questions: int, seed: int = 0) -> list[Example]:
    """Questions whose right candidate is told only by a lexical feature (its dense features
    are noise); one feature marks a single question's right candidate, too rare to weigh."""
    examples = synthetic(n_questions, seed)
    for q, example in enumerate(examples):
        right = example.f1.index(1.0)
        for row in example.rows:
            row["near"] = 0.0
        example.lexical = [["dep=dobj|q=what" if k == right else "dep=nsubj|q=what"]
                           + (["root=once|q=what"] if q == 0 and k == right else []) for k in range(len(example.rows))]
    return examples


def test_the_lexicon_weighs_the_lexical_feature_that_marks_the_answer():
    weights, lexicon = fit_weights(lexical_examples(40), NAMES, l2=0.01)
    assert lexicon["dep=dobj|q=what"] > lexicon["dep=nsubj|q=what"] + 0.5
    assert "root=once|q=what" not in lexicon  # in fewer than MIN_QUESTIONS questions
    held_out = lexical_examples(10, seed=7)
    assert [ranking(e, weights, NAMES, 5, lexicon)[0] for e in held_out] == [e.f1.index(1.0) for e in held_out]
    assert [ranking(e, weights, NAMES, 5)[0] for e in held_out] != [e.f1.index(1.0) for e in held_out]


def test_a_weights_file_carries_its_lexicon_to_the_selector(tmp_path):
    path = tmp_path / "weights.json"
    write_weights(path, Fitted(NAMES, torch.tensor([0.0, 1.0, 0.0]), lexicon={"dep=dobj|q=what": 2.5}),
                  list(FEATURES), {})
    assert json.loads(path.read_text())["format"] == "nlpipe.SelectorWeights.v3"
    selector = make_span_selector(weights_file=str(path))
    assert selector.lexicon == {"dep=dobj|q=what": 2.5}
    row = dict.fromkeys(FEATURES, 0.0) | {"near": 1.0}
    assert selector.combine(row, ["dep=dobj|q=what", "dep=nsubj|q=what"]) == pytest.approx(3.5)
    assert make_span_selector(weights_file="span_selector.v2.json").lexicon == {}
