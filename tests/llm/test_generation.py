"""nlpipe.llm.generation on the tiny random Llama: batching, padding, log-probs, EOS, sampling."""

import pytest
import torch

from nlpipe.llm.generation import forward_step, generate, left_pad, sample_top_p

TEXTS = [
    "The Eiffel Tower is",
    "Super Bowl 50 was played on February 7, 2016, at Levi's Stadium",
    "Who",
    "What was the score?",
]


@pytest.fixture(scope="module")
def prompts(tokenizer):
    prompts = [tokenizer(text)["input_ids"] for text in TEXTS]
    assert len({len(p) for p in prompts}) == len(prompts), "the prompts must differ in length"
    return prompts


def _greedy(model, tokenizer, prompts, **kwargs):
    settings = dict(max_gen_len=8, pad_id=tokenizer.pad_token_id, eos_ids=[], logprobs=True)
    settings.update(kwargs)
    return generate(model, prompts, **settings)


def _full_logprobs(model, tokens):
    """log_softmax of an unpadded, uncached forward pass over `tokens`: row i predicts tokens[i + 1]."""
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([tokens])).logits[0].float()
    return torch.log_softmax(logits, dim=-1)


def test_batch_of_different_lengths_matches_each_prompt_alone(model, tokenizer, prompts):
    batched = _greedy(model, tokenizer, prompts)
    assert len(batched) == len(prompts)
    for prompt, together in zip(prompts, batched):
        alone = _greedy(model, tokenizer, [prompt])[0]
        assert len(together.tokens) == 8
        assert together.tokens == alone.tokens
        assert torch.allclose(torch.tensor(together.logprobs), torch.tensor(alone.logprobs), atol=1e-4)


def test_left_pad_puts_padding_on_the_left():
    token_ids, mask = left_pad([[5, 6, 7], [9]], pad_id=0, device="cpu")
    assert token_ids.tolist() == [[5, 6, 7], [0, 0, 9]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert token_ids.dtype == torch.long and mask.dtype == torch.long


def test_left_padded_row_computes_what_it_computes_alone(model, tokenizer, prompts):
    short, long = prompts[0], prompts[1]
    assert len(short) < len(long)
    token_ids, mask = left_pad([short, long], tokenizer.pad_token_id, model.device)
    assert int(mask[0].sum()) == len(short)
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        padded_logits, cache = forward_step(model, token_ids, mask, position_ids, None)
        alone_short = model(input_ids=torch.tensor([short])).logits[0, -1]
        alone_long = model(input_ids=torch.tensor([long])).logits[0, -1]
    assert padded_logits.shape == (2, 1, model.config.vocab_size)
    assert cache is not None
    assert torch.allclose(padded_logits[0, -1], alone_short, atol=1e-4)
    assert torch.allclose(padded_logits[1, -1], alone_long, atol=1e-4)


def test_left_padding_without_mask_and_positions_would_differ(model, tokenizer, prompts):
    """Guards the test above: padding really changes the result unless it is masked out."""
    short, long = prompts[0], prompts[1]
    token_ids, _ = left_pad([short, long], tokenizer.pad_token_id, model.device)
    with torch.inference_mode():
        unmasked = model(input_ids=token_ids).logits[0, -1]
        alone = model(input_ids=torch.tensor([short])).logits[0, -1]
    assert not torch.allclose(unmasked, alone, atol=1e-4)


def test_logprobs_equal_a_full_forward_pass(model, tokenizer, prompts):
    for prompt, generation in zip(prompts, _greedy(model, tokenizer, prompts)):
        full = _full_logprobs(model, prompt + generation.tokens)
        positions = torch.arange(len(prompt) - 1, len(prompt) - 1 + len(generation.tokens))
        expected = full[positions, torch.tensor(generation.tokens)]
        assert len(generation.logprobs) == len(generation.tokens)
        assert torch.allclose(torch.tensor(generation.logprobs), expected, atol=1e-4)
        # greedy: every chosen token is the argmax of the full forward pass
        assert full[positions].argmax(-1).tolist() == generation.tokens


def test_no_logprobs_unless_asked(model, tokenizer, prompts):
    generations = _greedy(model, tokenizer, prompts[:2], logprobs=False)
    assert all(g.logprobs is None for g in generations)
    assert [g.tokens for g in generations] == [g.tokens for g in _greedy(model, tokenizer, prompts[:2])]


def test_echo_returns_prompt_and_its_logprobs(model, tokenizer, prompts):
    plain = _greedy(model, tokenizer, prompts)
    echoed = _greedy(model, tokenizer, prompts, echo=True)
    for prompt, without, generation in zip(prompts, plain, echoed):
        assert generation.tokens == prompt + without.tokens
        assert len(generation.logprobs) == len(generation.tokens)
        assert generation.logprobs[0] == 0.0
        full = _full_logprobs(model, generation.tokens)
        expected = full[torch.arange(len(generation.tokens) - 1), torch.tensor(generation.tokens[1:])]
        assert torch.allclose(torch.tensor(generation.logprobs[1:]), expected, atol=1e-4)


def test_echo_without_logprobs(model, tokenizer, prompts):
    echoed = _greedy(model, tokenizer, prompts[:2], echo=True, logprobs=False)
    plain = _greedy(model, tokenizer, prompts[:2], logprobs=False)
    for prompt, without, generation in zip(prompts, plain, echoed):
        assert generation.tokens == prompt + without.tokens
        assert generation.logprobs is None


def test_each_row_stops_at_its_own_eos(model, tokenizer, prompts):
    free = _greedy(model, tokenizer, prompts)
    # a row whose 2nd token is new to that row and appears in no other row's output
    candidates = [
        row for row, g in enumerate(free)
        if g.tokens[1] != g.tokens[0]
        and all(g.tokens[1] not in other.tokens for j, other in enumerate(free) if j != row)
    ]
    assert candidates, "no usable EOS candidate; pick other prompts"
    row = candidates[0]
    eos = free[row].tokens[1]

    stopped = _greedy(model, tokenizer, prompts, eos_ids=[eos])
    assert stopped[row].tokens == free[row].tokens[:1]
    assert stopped[row].logprobs == pytest.approx(free[row].logprobs[:1], abs=1e-4)
    for j, (before, after) in enumerate(zip(free, stopped)):
        if j == row:
            continue
        assert after.tokens == before.tokens  # the others run on to max_gen_len
        assert after.logprobs == pytest.approx(before.logprobs, abs=1e-4)


def test_eos_first_token_gives_empty_generation(model, tokenizer, prompts):
    first = _greedy(model, tokenizer, [prompts[0]])[0].tokens[0]
    generation = _greedy(model, tokenizer, [prompts[0]], eos_ids=[first])[0]
    assert generation.tokens == []
    assert generation.logprobs == []


def test_tiny_top_p_is_greedy(model, tokenizer, prompts):
    greedy = _greedy(model, tokenizer, prompts)
    sampled = _greedy(model, tokenizer, prompts, temperature=1.0, top_p=1e-9,
                      generator=torch.Generator().manual_seed(123))
    assert [g.tokens for g in sampled] == [g.tokens for g in greedy]


def test_same_seed_same_samples_other_seed_differs(model, tokenizer, prompts):
    def sample(seed):
        return [g.tokens for g in _greedy(model, tokenizer, prompts, temperature=5.0, top_p=1.0,
                                          logprobs=False, generator=torch.Generator().manual_seed(seed))]

    first = sample(0)
    assert sample(0) == first
    assert sample(1) != first
    assert first != [g.tokens for g in _greedy(model, tokenizer, prompts)]  # it really sampled


def test_sample_top_p_only_draws_from_the_nucleus():
    # sorted: 0.5 (id 3), 0.3 (id 1), 0.15 (id 2), 0.05 (id 0); mass before each: 0, .5, .8, .95
    probs = torch.tensor([0.05, 0.3, 0.15, 0.5]).repeat(2000, 1)
    generator = torch.Generator().manual_seed(0)
    drawn = sample_top_p(probs.clone(), 0.7, generator)
    assert drawn.shape == (2000,)
    assert set(drawn.tolist()) == {1, 3}
    share_of_3 = (drawn == 3).float().mean().item()
    assert 0.55 < share_of_3 < 0.70  # 0.5 / 0.8 = 0.625 after renormalising

    assert set(sample_top_p(probs.clone(), 0.0, generator).tolist()) == {3}
    assert set(sample_top_p(probs.clone(), 0.85, generator).tolist()) == {1, 2, 3}
    assert set(sample_top_p(probs.clone(), 1.0, generator).tolist()) == {0, 1, 2, 3}


def test_sample_top_p_rows_are_independent():
    probs = torch.tensor([[0.9, 0.05, 0.05], [0.05, 0.05, 0.9]])
    drawn = sample_top_p(probs, 0.5, torch.Generator().manual_seed(0))
    assert drawn.tolist() == [0, 2]


@pytest.mark.parametrize("bad", [[[]], [], [[5, 6], []]])
def test_empty_prompt_raises(model, tokenizer, bad):
    with pytest.raises(ValueError):
        generate(model, bad, max_gen_len=4, pad_id=tokenizer.pad_token_id, eos_ids=[])


def test_zero_new_tokens_without_logprobs(model, tokenizer, prompts):
    generations = _greedy(model, tokenizer, prompts[:2], max_gen_len=0, logprobs=False)
    assert [g.tokens for g in generations] == [[], []]


def test_zero_new_tokens_with_logprobs(model, tokenizer, prompts):
    generations = _greedy(model, tokenizer, prompts[:2], max_gen_len=0, logprobs=True)
    assert [g.tokens for g in generations] == [[], []]
    assert [g.logprobs for g in generations] == [[], []]
