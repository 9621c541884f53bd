"""The verifier (llm.verifier): layers by depth, the prompt it reads, the regression it fits and
the file it is kept in, refused for another model's states."""

import json

import pytest
import torch

from nlpipe.llm.reader import ModelMismatch
from nlpipe.llm.verifier import (ANSWER_CUE, MAX_CONTEXT_TOKENS, VERIFIER_FILE, cue_ids, fit_verifier, load_verifier,
                                 save_verifier, verification_inputs, verification_row, verifier_layers)
from nlpipe.metrics import auc


def test_its_layers_are_halfway_and_two_thirds_up_whatever_the_depth():
    assert verifier_layers(30) == (15, 20)
    assert verifier_layers(24) == (12, 16)
    assert verifier_layers(2) == (1,)


def test_it_reads_the_question_after_the_sentences(tiny_llama_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    prefix, asked = verification_row(tokenizer, ["The Danube is long.", "It  flows\neast."], "How long is it?")
    text = tokenizer.decode(prefix + asked, skip_special_tokens=True)
    assert " ".join(text.split()) == "Context: The Danube is long. It flows east. Question: How long is it? Answer:"
    assert tokenizer.decode(asked).endswith(ANSWER_CUE) and "Question" not in tokenizer.decode(asked)
    long_prefix, _ = verification_row(tokenizer, ["word " * 2000], "Why?")
    assert len(long_prefix) <= MAX_CONTEXT_TOKENS + len(tokenizer("Context:\nQuestion:")["input_ids"]) + 2


def test_it_weighs_the_last_tokens_states_and_the_questions_mean_without_the_cue(tiny_llama_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    _, asked = verification_row(tokenizer, ["The Danube is long."], "How long is it?")
    cue = len(cue_ids(tokenizer))
    assert asked[-cue:] == cue_ids(tokenizer)
    states = torch.arange(len(asked) * 4, dtype=torch.float32).reshape(len(asked), 4)
    inputs = verification_inputs(states, cue)
    assert torch.equal(inputs[:4], states[-1]) and torch.equal(inputs[4:], states[:-cue].mean(0))
    assert torch.equal(verification_inputs(states[-cue:], cue)[4:], states[-cue])  # a question of no tokens


def synthetic(n: int, seed: int):
    """Inputs whose first two columns say whether there is an answer, the rest noise; a third unanswerable."""
    generator = torch.Generator().manual_seed(seed)
    unanswerable = (torch.rand(n, generator=generator) < 1 / 3).float()
    inputs = torch.randn(n, 12, generator=generator) * 3 + 5
    inputs[:, 0] += 6 * unanswerable
    inputs[:, 1] -= 4 * unanswerable
    return inputs, unanswerable


def test_it_learns_what_tells_unanswerable_questions_apart_and_keeps_it_in_a_file(tmp_path):
    inputs, unanswerable = synthetic(600, 0)
    verifier = fit_verifier(inputs, unanswerable, (1, 2), 3, sentences=2)
    assert verifier.weights[0] > 0 > verifier.weights[1]
    held_inputs, held_labels = synthetic(400, 1)
    chances = verifier.no_answer(held_inputs)
    assert auc(chances.tolist(), held_labels.bool().tolist()) > 0.85
    # Each class weighs half: the mean chance sits near 0.5 on both, not near the 1/3 base rate.
    assert 0.4 < chances.mean() < 0.6
    save_verifier(verifier, tmp_path, {"note": "test"})
    loaded = load_verifier(tmp_path, 3, 4)
    assert loaded.layers == (1, 2) and loaded.sentences == 2
    assert torch.allclose(loaded.no_answer(held_inputs), chances, atol=1e-4)
    assert load_verifier(tmp_path / "none", 3, 4) is None


@pytest.mark.parametrize("change, error", [
    ({"hidden_size": 8}, ModelMismatch),  # another model's states
    ({"format": "nlpipe.Verifier.v9"}, ValueError),
    ({"weights": [1.0]}, ValueError),
])
def test_a_verifier_for_other_states_or_a_damaged_file_is_refused(tmp_path, change, error):
    inputs, unanswerable = synthetic(60, 0)
    save_verifier(fit_verifier(inputs, unanswerable, (1, 2), 3), tmp_path, {})
    document = json.loads((tmp_path / VERIFIER_FILE).read_text())
    (tmp_path / VERIFIER_FILE).write_text(json.dumps({**document, **change}))
    with pytest.raises(error):
        load_verifier(tmp_path, 3, 4)


def test_a_verifier_for_layers_the_model_lacks_is_refused(tmp_path):
    inputs, unanswerable = synthetic(60, 0)
    save_verifier(fit_verifier(inputs, unanswerable, (1, 20), 3), tmp_path, {})
    with pytest.raises(ModelMismatch):
        load_verifier(tmp_path, 3, 4)


def test_auc_counts_ties_half_and_needs_both_classes():
    assert auc([0.9, 0.1, 0.5, 0.5], [True, False, True, False]) == pytest.approx((1 + 1 + 1 + 0.5) / 4)
    assert auc([0.3, 0.4], [True, True]) is None
