"""Shared prefixes: computed once, and generation identical to whole prompts."""

import pytest

from nlpipe.llm.generation import generate


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


def test_each_prefix_is_computed_once(model, tokenizer, groups, monkeypatch):
    prefixes, suffixes, index = groups
    shapes = []
    original = model.forward

    def spy(*args, **kwargs):
        shapes.append(tuple(kwargs["input_ids"].shape))
        return original(*args, **kwargs)
    monkeypatch.setattr(model, "forward", spy)
    generate(model, suffixes, prefixes=prefixes, prefix_index=index, max_gen_len=1,
             pad_id=tokenizer.pad_token_id, eos_ids=[tokenizer.eos_token_id])
    longest_prefix, longest_suffix = max(map(len, prefixes)), max(map(len, suffixes))
    assert shapes == [(2, longest_prefix), (4, longest_suffix)]


def test_echo_needs_whole_prompts(model, groups):
    prefixes, suffixes, index = groups
    with pytest.raises(ValueError):
        generate(model, suffixes, prefixes=prefixes, prefix_index=index, max_gen_len=1, pad_id=0, eos_ids=[], echo=True)
