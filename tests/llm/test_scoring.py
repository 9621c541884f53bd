"""score_batch: log-likelihoods equal a full forward pass, with the prompt computed once."""

import pytest
import torch

from nlpipe.llm.engine import Llama
from nlpipe.llm.scoring import score_batch


def score_continuations(model, prompt, continuations, pad_id):
    return score_batch(model, [prompt], [continuations], pad_id)[0]


def full_forward_logprobs(model, prompt, continuation):
    ids = torch.tensor([prompt + continuation])
    with torch.inference_mode():
        logprobs = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
    return [logprobs[len(prompt) - 1 + i, token].item() for i, token in enumerate(continuation)]


def test_scores_equal_a_full_forward_pass(model, tokenizer):
    prompt = tokenizer("Where is the Eiffel Tower? Answer:")["input_ids"]
    continuations = [tokenizer(t)["input_ids"] for t in (" Paris", " in Paris, France", " 1889")]
    scores = score_continuations(model, prompt, continuations, tokenizer.pad_token_id)
    for continuation, score in zip(continuations, scores):
        expected = full_forward_logprobs(model, prompt, continuation)
        assert score.token_logprobs == pytest.approx(expected, abs=1e-4)
        assert score.total_logprob == pytest.approx(sum(expected), abs=1e-4)
        assert score.mean_logprob == pytest.approx(sum(expected) / len(expected), abs=1e-4)


def test_the_prompt_is_computed_once(model, tokenizer, monkeypatch, forward_shapes):
    prompt = tokenizer("The Denver Broncos defeated the Carolina Panthers.")["input_ids"]
    continuations = [tokenizer(t)["input_ids"] for t in (" Denver", " Carolina Panthers", " 24", " the NFL")]
    seen_shapes = forward_shapes
    score_continuations(model, prompt, continuations, tokenizer.pad_token_id)
    packed = sum(len(c) - 1 for c in continuations)
    # ONE pass: the prompt, then all continuations packed after it, each over its own tokens
    # (a last token is predicted, never fed).
    assert seen_shapes == [(1, len(prompt) + packed)]


def test_empty_inputs_are_refused(model):
    with pytest.raises(ValueError):
        score_continuations(model, [], [[1]], 0)
    with pytest.raises(ValueError):
        score_continuations(model, [1, 2], [[1], []], 0)


def test_engine_score_ranks_the_greedy_continuation_first(tiny_llama_dir):
    llm = Llama(tiny_llama_dir, device="cpu", max_new_tokens=3)
    prompt = llm.encode_chat([{"role": "user", "content": "Where is the tower?"}])
    greedy = llm.complete([prompt])[0].tokens
    other = [(t + 7) % len(llm.tokenizer) for t in greedy]
    best, worse = llm.score(prompt, [greedy, other])
    assert best.total_logprob > worse.total_logprob


def test_score_batch_with_shared_prefixes_equals_whole_prompts(model, tokenizer):
    from nlpipe.llm.scoring import score_batch

    encode = lambda text: tokenizer(text)["input_ids"]  # noqa: E731
    prefixes = [encode("Context: The Eiffel Tower is in Paris."), encode("Context: Super Bowl 50 was in 2016.")]
    prompts = [encode(" Where is it? Answer:"), encode(" When? Answer:"), encode(" Who won? Answer:")]
    candidates = [[encode(" Paris"), encode(" France, Europe")], [encode(" 2016")], [encode(" Denver"), encode(" x")]]
    index = [0, 1, 1]
    scores = score_batch(model, prompts, candidates, tokenizer.pad_token_id, prefixes=prefixes, prefix_index=index)
    for i, group in enumerate(candidates):
        for candidate, score in zip(group, scores[i]):
            expected = full_forward_logprobs(model, prefixes[index[i]] + prompts[i], candidate)
            assert score.token_logprobs == pytest.approx(expected, abs=1e-4)


def test_score_batch_in_small_packs_equals_one_pass(model, tokenizer):
    from nlpipe.llm.scoring import score_batch

    encode = lambda text: tokenizer(text)["input_ids"]  # noqa: E731
    prompts = [encode("Where is it?"), encode("When was it opened, and by whom?")]
    candidates = [[encode(" Paris"), encode(" France"), encode(" a tower")], [encode(" 1889"), encode(" Eiffel")]]
    whole = score_batch(model, prompts, candidates, tokenizer.pad_token_id)
    chunked = score_batch(model, prompts, candidates, tokenizer.pad_token_id, max_tokens=2)
    for a_group, b_group in zip(whole, chunked):
        for a, b in zip(a_group, b_group):
            assert a.token_logprobs == pytest.approx(b.token_logprobs, abs=1e-4)


def test_small_packs_with_shared_prefixes_equal_whole_prompts(model, tokenizer):
    from nlpipe.llm.scoring import score_batch

    encode = lambda text: tokenizer(text)["input_ids"]  # noqa: E731
    prefixes = [encode("Context: The Eiffel Tower is in Paris, France."), encode("Context: 2016.")]
    prompts = [encode(" Where? Answer:"), encode(" When was the game played? Answer:"), encode(" Why?")]
    candidates = [[encode(" Paris"), encode(" in Paris, France"), encode(" a")], [encode(" 2016, in February")],
                  [encode(" because it was built for the fair"), encode(" no")]]
    index = [0, 1, 0]
    scores = score_batch(model, prompts, candidates, tokenizer.pad_token_id, prefixes=prefixes, prefix_index=index,
                         max_tokens=3)  # several rows per prompt, several passes
    for i, group in enumerate(candidates):
        for candidate, score in zip(group, scores[i], strict=True):
            expected = full_forward_logprobs(model, prefixes[index[i]] + prompts[i], candidate)
            assert score.token_logprobs == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("max_tokens", [1, 2, 3, 5, 8, 1024])
def test_scoring_passes_are_the_token_groups_of_its_packed_rows(model, tokenizer, monkeypatch, max_tokens, forward_shapes):
    """Scoring cuts its packed rows into passes by token_groups, each row costing its packed width."""
    from nlpipe.llm.batching import token_groups
    from nlpipe.llm.scoring import _packed_rows

    encode = lambda text: tokenizer(text)["input_ids"]  # noqa: E731
    prompts = [encode("Where is it?"), encode("When was it opened, and by whom?"), encode("Why?"), encode("Who?")]
    candidates = [[encode(" Paris"), encode(" in Paris, France"), encode(" a tower")], [],
                  [encode(" because it was built for the World's Fair"), encode(" no")], [encode(" Eiffel")]]
    rows = _packed_rows([i for i, group in enumerate(candidates) if group], candidates, max_tokens)
    widths = [row.width for row in rows]
    expected = [(len(group), max(len(prompts[rows[r].prompt]) for r in group) + max(widths[r] for r in group))
                for group in token_groups(list(range(len(rows))), widths, max_tokens)]
    shapes = forward_shapes
    score_batch(model, prompts, candidates, tokenizer.pad_token_id, max_tokens=max_tokens)
    assert shapes == expected
