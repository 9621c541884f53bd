"""nlpipe train: SQuAD examples, the feature cache, the head's training loop, cross-validation,
the reader folder, and the reader answering in the pipeline — on a tiny random model and tiny
data made here (seconds), never the real pool."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from nlpipe.errors import ConfigError, InputError
from nlpipe.llm.engine import Llama
from nlpipe.llm.reader import (ReaderConfig, SpanReader, best_spans, default_layers, held_out_readers, load_reader,
                               save_reader, span_distribution)
from nlpipe.training import features as feature_cache
from nlpipe.training.examples import answer_spans, deal_folds, fold_keys, read_examples
from nlpipe.training.job import train_reader
from nlpipe.training.train import (Checkpoint, Prediction, choose_threshold, predict, token_targets,
                                   train_head)
from tests.squad_data import SMALL, write_squad



@pytest.fixture()
def squad_file(tmp_path) -> Path:
    return write_squad(tmp_path / "tiny-squad.json")


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NLPIPE_CACHE", str(tmp_path / "cache"))


@pytest.fixture()
def tiny_llm(tiny_llama_dir) -> Llama:
    return Llama(tiny_llama_dir, device="cpu", dtype="float32")


def test_answer_spans_are_every_whole_word_occurrence():
    context = "US troops left the USB port. The US won."
    assert answer_spans(context, ["US"]) == ((0, 2), (33, 35))
    assert answer_spans(context, ["Mars"]) == ()


def test_examples_keep_unanswerable_questions_and_drop_answers_not_in_the_text(squad_file, tmp_path):
    examples = read_examples([squad_file])
    assert len(examples) == 13
    assert sum(not e.answerable for e in examples) == 3
    broken = write_squad(tmp_path / "broken.json", {"A": [("Some text.", [("Q?", ["not there"])])]})
    assert read_examples([broken]) == []


def test_folds_split_by_article_and_by_paragraph_for_one_article(squad_file):
    examples = read_examples([squad_file])
    unit, keys = fold_keys(examples)
    assert unit == "article"
    folds = deal_folds(keys, 2)
    assert sorted(a for fold in folds for a in fold) == ["People", "Rivers", "Sport"]
    assert deal_folds(keys, 10) == deal_folds(keys, 3)  # never an empty fold
    one = [e for e in examples if e.article == "Rivers"]
    assert fold_keys(one)[0] == "paragraph" and len(set(fold_keys(one)[1])) == 2


def test_token_targets_cover_the_answer_tokens(squad_file, tiny_llm):
    example = next(e for e in read_examples([squad_file]) if e.question == "When did Marie Curie move to Paris?")
    [encoded] = feature_cache.encode(tiny_llm.tokenizer, [example], 400)
    cells = token_targets(example, encoded.offsets, 30)
    assert cells
    for first, last in cells:
        text = example.context[encoded.offsets[first - 1][0]:encoded.offsets[last - 1][1]]
        assert text.strip() == "1891"
    unanswerable = next(e for e in read_examples([squad_file]) if not e.answerable)
    assert token_targets(unanswerable, encoded.offsets, 30) == [(0, 0)]
    assert token_targets(example, encoded.offsets, 1) == [c for c in cells if c[0] == c[1]]


def test_an_answer_longer_than_the_head_can_give_is_left_out_not_infinite(squad_file, tiny_llm):
    """Such an answer's cells are -inf in span_distribution: a loss of inf and NaN weights."""
    examples = read_examples([squad_file])
    layers = default_layers(2)
    cache = feature_cache.extract(tiny_llm, examples, layers, "long")
    head = train_head(cache, examples, list(range(len(examples))), 64, layers,
                      replace(SMALL, max_answer_tokens=1))
    assert all(torch.isfinite(p).all() for p in head.parameters())
    predictions = predict(head, cache, examples, list(range(len(examples))))
    assert all(p.no_answer == p.no_answer for p in predictions)  # no NaN


def test_span_distribution_is_one_distribution_over_spans_and_no_answer():
    start, end = torch.randn(2, 7), torch.randn(2, 7)
    log_probs = span_distribution(start, end, max_answer_tokens=3)
    assert torch.allclose(log_probs.exp().flatten(1).sum(-1), torch.ones(2))
    spans, no_answer = best_spans(log_probs[0], k=50)
    assert all(0 <= s.first <= s.last < s.first + 3 and s.last < 6 for s in spans)
    assert len(spans) == sum(min(3, 6 - i) for i in range(6))
    assert abs(sum(s.probability for s in spans) + no_answer - 1) < 1e-5


def test_feature_extraction_resumes_to_the_same_features(squad_file, tiny_llm):
    examples = read_examples([squad_file])
    layers = default_layers(tiny_llm.model.config.num_hidden_layers)
    whole = feature_cache.extract(tiny_llm, examples, layers, "whole", max_batch_tokens=128)
    partial = feature_cache.extract(tiny_llm, examples, layers, "resumed", max_batch_tokens=128, stop_after=2)
    assert not json.loads((partial.folder / "progress.json").read_text())["complete"]
    resumed = feature_cache.extract(tiny_llm, examples, layers, "resumed", max_batch_tokens=128)
    assert (resumed.matrix == whole.matrix).all()
    assert json.loads((resumed.folder / "progress.json").read_text())["complete"]
    # Each example's rows are its context tokens' hidden states.
    direct = tiny_llm.read_stream([(whole.encoded[3].question, whole.encoded[3].context)], ReaderConfig(64, layers))
    [(_, expected)] = list(direct)
    assert torch.allclose(whole.features(3).float(), expected.to(torch.bfloat16).float())


def test_training_is_reproducible_and_resumes_to_the_same_weights(squad_file, tiny_llm, tmp_path):
    examples = read_examples([squad_file])
    layers = default_layers(2)
    cache = feature_cache.extract(tiny_llm, examples, layers, "k")
    indices = list(range(len(examples)))

    def train(checkpoint=None, stop_after=None):
        return train_head(cache, examples, indices, 64, layers, SMALL, checkpoint, stop_after=stop_after)

    first, second = train(), train()
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)
    checkpoint = Checkpoint(tmp_path / "run.pt", every=1)
    assert train(checkpoint, stop_after=3) is None  # interrupted after 3 mini-batches
    resumed = train(checkpoint)
    for a, b in zip(first.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def test_the_head_learns_the_training_answers(squad_file, tiny_llm):
    examples = read_examples([squad_file])
    layers = default_layers(2)
    cache = feature_cache.extract(tiny_llm, examples, layers, "learn")
    indices = list(range(len(examples)))
    settings = replace(SMALL, epochs=60, dropout=0.0, learning_rate=1e-2)
    head = train_head(cache, examples, indices, 64, layers, settings)
    predictions = predict(head, cache, examples, indices)
    right = sum(p.scored(choose_threshold(predictions))[1] for p in predictions) / len(predictions)
    assert right > 0.8


def test_threshold_maximises_balanced_f1():
    predictions = [Prediction("a", "x", 0.1, ("x",)), Prediction("b", "y", 0.3, ("y",)),
                   Prediction("c", "z", 0.6, ()), Prediction("d", "w", 0.9, ())]
    threshold = choose_threshold(predictions)
    assert 0.3 < threshold <= 0.6
    assert choose_threshold(predictions[:2]) is None  # without unanswerable questions: always answer


def test_train_reader_writes_a_reader_with_provenance(squad_file, tiny_llama_dir, tmp_path):
    output = tmp_path / "reader"
    result = train_reader([squad_file], output, model=str(tiny_llama_dir), device="cpu", dtype="float32",
                          settings=SMALL, folds=3)
    head, meta = load_reader(output)
    provenance = meta["provenance"]
    assert provenance["data"]["tiny-squad.json"] and provenance["cross_validation"]["split"] == "article"
    assert len(provenance["cross_validation"]["folds"]) == 3 == len(result.folds)
    assert provenance["threshold"] == result.threshold
    assert provenance["settings"]["seed"] == 0 and provenance["layers"] == [1, 2]
    assert head.config.hidden_size == 64
    # Each cross-validation head is kept with the articles it never saw (what `nlpipe fit` reads them with).
    kept = held_out_readers(output)
    assert [set(row["held"]) for row in provenance["cross_validation"]["folds"]] == [held for _, held in kept]
    assert all(load_reader(folder)[0].config == head.config for folder, _ in kept)
    assert not list(output.glob("folds/*/predictions.json"))
    again = train_reader([squad_file], tmp_path / "again", model=str(tiny_llama_dir), device="cpu",
                         dtype="float32", settings=SMALL, folds=3)
    assert (tmp_path / "again" / "reader.pt").read_bytes() == (output / "reader.pt").read_bytes()
    assert again.pooled == result.pooled


def test_train_reader_refuses_a_folder_that_is_not_a_reader(squad_file, tiny_llama_dir, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.md").write_text("keep me")
    with pytest.raises(ConfigError, match="E089"):
        train_reader([squad_file], tmp_path / "mine", model=str(tiny_llama_dir), device="cpu")
    assert (tmp_path / "mine" / "notes.md").read_text() == "keep me"


def test_train_reader_without_answerable_questions_says_so(tiny_llama_dir, tmp_path):
    empty = write_squad(tmp_path / "none.json", {"A": [("Text.", [("Q?", [])])]})
    with pytest.raises(InputError, match="E088"):
        train_reader([empty], tmp_path / "out", model=str(tiny_llama_dir), device="cpu")


def test_a_reader_for_another_hidden_size_is_refused_with_the_command_to_train_one(tiny_llama_dir, tmp_path):
    from nlpipe.components.reading import Reader

    head = SpanReader(ReaderConfig(hidden_size=32, layers=(1, 2), width=8, heads=2))
    save_reader(head, tmp_path / "other", {})
    with pytest.raises(ConfigError, match="E087.*nlpipe train"):
        Reader(str(tmp_path / "other")).head(Llama(tiny_llama_dir, device="cpu"))
    with pytest.raises(ConfigError, match="E086"):
        Reader(str(tmp_path / "missing")).head(Llama(tiny_llama_dir, device="cpu"))


def test_span_features_are_what_the_distribution_says_of_each_span():
    """Each reader feature, against the sum over the spans it describes."""
    import math

    from nlpipe.llm.reader import UNREAD, span_features

    torch.manual_seed(3)
    start, end = torch.randn(1, 7), torch.randn(1, 7)  # "no answer" and 6 context tokens
    log_probs = span_distribution(start, end, max_answer_tokens=4)[0]
    probs = log_probs.exp()
    answered = 1 - probs[0, 0].item()
    spans = [(i, j) for i in range(6) for j in range(6) if i <= j < i + 4]
    for (first, last), row in zip([(1, 2), (0, 0), (3, 5)], span_features(log_probs, [(1, 2), (0, 0), (3, 5)])):
        assert row["reader_exact"] == pytest.approx(log_probs[first + 1, last + 1].item())
        assert row["reader_start"] == pytest.approx(math.log(sum(probs[first + 1, j + 1].item()
                                                                 for i, j in spans if i == first)), rel=1e-4)
        assert row["reader_end"] == pytest.approx(math.log(sum(probs[i + 1, last + 1].item()
                                                               for i, j in spans if j == last)), rel=1e-4)
        overlapping = sum(probs[i + 1, j + 1].item() for i, j in spans if i <= last and j >= first)
        inside = sum(probs[i + 1, j + 1].item() for i, j in spans if first <= i and j <= last)
        assert row["reader_overlap"] == pytest.approx(overlapping / answered, abs=1e-5)
        assert row["reader_inside"] == pytest.approx(inside / answered, abs=1e-5)
        assert set(row) == set(UNREAD)
    # A span the distribution forbids (longer than max_answer_tokens) is as unlikely as unread.
    [long] = span_features(log_probs, [(0, 5)])
    assert long["reader_exact"] == UNREAD["reader_exact"] and long["reader_overlap"] == pytest.approx(1.0)
