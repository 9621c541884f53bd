"""Shared prefixes: computed once, and generation identical to whole prompts."""

import pytest
import torch

from nlpipe.llm.generation import cache_rows, generate, prefill, prefill_prefixes


@pytest.fixture(scope="module")
def groups(tokenizer):
    encode = lambda text: tokenizer(text)["input_ids"]  # noqa: E731
    prefixes = [encode("Context: The Eiffel Tower is a wrought-iron lattice tower in Paris, France."),
                encode("Context: Super Bowl 50 was played at Levi's Stadium.")]
    suffixes = [encode(" Question: Where is it?"), encode(" Question: How tall is the tower, and who designed it?"),
                encode(" Question: Where?"), encode(" Question: Who won?")]
    return prefixes, suffixes, [0, 0, 1, 1]


def test_prefixed_generation_equals_whole_prompts(model, tokenizer, groups):
    prefixes, suffixes, index = groups
    settings = dict(max_gen_len=6, pad_id=tokenizer.pad_token_id, eos_ids=[tokenizer.eos_token_id], logprobs=True)
    shared = generate(model, suffixes, prefixes=prefixes, prefix_index=index, **settings)
    whole = generate(model, [prefixes[i] + s for i, s in zip(index, suffixes)], **settings)
    for a, b in zip(shared, whole):
        assert a.tokens == b.tokens
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4)


def test_each_prefix_is_computed_once(model, tokenizer, groups, monkeypatch, forward_shapes):
    prefixes, suffixes, index = groups
    shapes = forward_shapes
    generate(model, suffixes, prefixes=prefixes, prefix_index=index, max_gen_len=1,
             pad_id=tokenizer.pad_token_id, eos_ids=[tokenizer.eos_token_id])
    longest_prefix, longest_suffix = max(map(len, prefixes)), max(map(len, suffixes))
    assert shapes == [(2, longest_prefix), (4, longest_suffix)]


def test_echo_needs_whole_prompts(model, groups):
    prefixes, suffixes, index = groups
    with pytest.raises(ValueError):
        generate(model, suffixes, prefixes=prefixes, prefix_index=index, max_gen_len=1, pad_id=0, eos_ids=[], echo=True)


def test_prefix_rows_continue_as_one_whole_pass(model, tokenizer, groups):
    """prefill_prefixes + cache_rows, where generation and scoring both start from a shared
    prefix: each suffix's logits after its prefix's cache row are those of the whole prompt."""
    prefixes, suffixes, index = groups
    state = prefill(model, suffixes, tokenizer.pad_token_id, prefixes, index, logits_to_keep=0)
    for row, (suffix, prefix) in enumerate(zip(suffixes, (prefixes[i] for i in index))):
        with torch.inference_mode():
            whole = model(input_ids=torch.tensor([prefix + suffix])).logits[0, -len(suffix):]
        torch.testing.assert_close(state.logits[row, -len(suffix):], whole, atol=1e-4, rtol=0)


def test_cache_rows_leaves_the_prefix_cache_for_the_next_pass(model, tokenizer, groups):
    """Scoring takes rows of one prefix cache for pass after pass: taking them must not change it."""
    prefixes, _, _ = groups
    cache, _ = prefill_prefixes(model, prefixes, tokenizer.pad_token_id)
    before = [(layer.keys.clone(), layer.values.clone()) for layer in cache.layers]
    rows = torch.tensor([1, 0, 1])
    selected = cache_rows(cache, rows)
    for layer, chosen, (keys, values) in zip(cache.layers, selected.layers, before, strict=True):
        assert torch.equal(layer.keys, keys) and torch.equal(layer.values, values)
        assert torch.equal(chosen.keys, keys[rows]) and torch.equal(chosen.values, values[rows])
