"""The selector's fitting code on synthetic features: it finds the feature that marks the answer."""

import json

import pytest
import torch

from nlpipe.components.fitting import choose, cross_validate, fit, fit_temperature, with_confidence, write_weights
from nlpipe.components.selection import make_span_selector, read_weights

NAMES = ["likelihood", "near", "length"]


def synthetic(n_questions: int, seed: int = 0) -> list[dict]:
    """Questions whose right candidate has "near" = 1 (others 0), with noise in the other features."""
    generator = torch.Generator().manual_seed(seed)
    questions = []
    for q in range(n_questions):
        n = 5
        features = torch.rand(n, len(NAMES), generator=generator)
        features[:, 1] = 0.0
        right = q % n
        features[right, 1] = 1.0
        texts = [f"candidate {k}" for k in range(n)]
        questions.append({"id": str(q), "texts": texts, "references": [texts[right]], "features": features,
                          "f1": torch.tensor([1.0 if k == right else 0.0 for k in range(n)])})
    return questions


def test_fit_puts_the_weight_on_the_feature_that_marks_the_answer():
    weights = fit(synthetic(40), l2=0.01)
    assert weights[1] > 1.0 and weights[1] > abs(weights[0]) + abs(weights[2])
    chosen, scores = choose(synthetic(1, seed=5)[0], weights, max_candidates=3, names=NAMES)
    assert chosen == 0 and scores[0] == max(scores)


def test_cross_validation_holds_out_and_scores_every_question():
    held_out = cross_validate(synthetic(30), l2=0.01, folds=3, max_candidates=5, names=NAMES)
    assert len(held_out) == 30
    assert sum(p["exact_match"] for p in held_out) / 30 > 0.9


def test_temperature_fits_on_held_out_predictions():
    predictions = [{"scores": [2.0, 0.0], "exact_match": 1.0}, {"scores": [2.0, 1.9], "exact_match": 0.0}] * 10
    temperature = fit_temperature(predictions)
    assert 0.2 <= temperature <= 3.0
    rated = with_confidence(predictions, temperature)
    assert rated[0]["confidence"] > rated[1]["confidence"]


def test_a_written_weights_file_is_what_the_selector_reads(tmp_path):
    path = tmp_path / "weights.json"
    write_weights(path, NAMES, torch.tensor([0.5, 1.5, -0.25]), 0.8, {"data": [{"sha256": "abc"}]})
    assert json.loads(path.read_text())["provenance"]["data"][0]["sha256"] == "abc"
    assert read_weights(path)["weights"] == {"likelihood": 0.5, "near": 1.5, "length": -0.25}
    selector = make_span_selector(weights_file=str(path))
    assert selector.weights["near"] == 1.5 and selector.temperature == pytest.approx(0.8)


def test_pipelines_qa_cfg_uses_the_package_defaults():
    from nlpipe.components.selection import DEFAULT_TEMPERATURE, DEFAULT_WEIGHTS
    from nlpipe.config import load_config

    from ..conftest import REPO

    selector = load_config(REPO / "pipelines" / "qa.cfg")["components"]["llama_qa"]["selector"]
    built = make_span_selector(**{k: v for k, v in selector.items() if not k.startswith("@")})
    assert selector["@misc"] == "nlpipe.SpanSelector.v3"
    assert built.weights == DEFAULT_WEIGHTS and built.temperature == DEFAULT_TEMPERATURE
