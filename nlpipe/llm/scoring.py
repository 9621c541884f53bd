"""Likelihood of candidate continuations, computing each shared prompt part only once.

A prompt is run once and its KV cache copied to every continuation scored after it, so
ranking N candidate answers after a long context costs the context once, not N times.
"""

import copy
from dataclasses import dataclass

import torch

from .generation import forward_step, prefill


@dataclass
class ContinuationScore:
    total_logprob: float
    mean_logprob: float
    token_logprobs: list[float]


@torch.inference_mode()
def score_batch(model, prompts: list[list[int]], continuations: list[list[list[int]]], pad_id: int,
                prefixes: list[list[int]] | None = None, prefix_index: list[int] | None = None,
                max_rows: int = 128) -> list[list[ContinuationScore]]:
    """log P(continuation | prefix + prompt) for every continuation of every prompt.

    Prompt i is `prefixes[prefix_index[i]] + prompts[i]` (or `prompts[i]` without prefixes);
    `continuations[i]` are its candidates. Each prefix is computed once, each prompt once, and
    each continuation only over its own tokens, `max_rows` continuations at a time (each of
    them holds a copy of its prompt's cache, so this bounds memory).
    """
    if any(len(c) == 0 for group in continuations for c in group):
        raise ValueError("continuations must not be empty")
    scored = [i for i, group in enumerate(continuations) if group]
    if any(len(prompts[i]) == 0 for i in scored):
        raise ValueError("score_batch() needs at least one prompt token (after any prefix) per prompt")
    scores = [[] for _ in prompts]
    if not scored:
        return scores
    state = prefill(model, [prompts[i] for i in scored], pad_id, prefixes,
                    [prefix_index[i] for i in scored] if prefixes else None)
    # Each prompt's last position predicts the first token of all its continuations.
    first_logprobs = torch.log_softmax(state.logits[:, -1].float(), dim=-1)
    rows = [(n, c) for n, i in enumerate(scored) for c in continuations[i]]
    for start in range(0, len(rows), max_rows):
        chunk = rows[start:start + max_rows]
        for (n, _), score in zip(chunk, _score_rows(model, state, first_logprobs, chunk, pad_id)):
            scores[scored[n]].append(score)
    return scores


def _rows_of(cache, rows: torch.Tensor):
    """A cache holding `rows` of `cache` (repeats allowed), leaving `cache` as it was."""
    if hasattr(cache, "layers"):  # transformers 5: new tensors go into copies of the layer objects
        selected = copy.copy(cache)
        selected.layers = [copy.copy(layer) for layer in cache.layers]
    else:
        selected = copy.deepcopy(cache)
    selected.batch_select_indices(rows)
    return selected


def _score_rows(model, state, first_logprobs: torch.Tensor, rows: list[tuple[int, list[int]]],
                pad_id: int) -> list[ContinuationScore]:
    device = model.device
    prompt_of_row = torch.tensor([n for n, _ in rows], dtype=torch.long, device=device)
    longest = max(len(c) for _, c in rows)
    continuation_ids = torch.full((len(rows), longest), pad_id, dtype=torch.long, device=device)
    continuation_mask = torch.zeros((len(rows), longest), dtype=torch.long, device=device)
    for row, (_, tokens) in enumerate(rows):  # right padding: causal attention never sees it
        continuation_ids[row, :len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        continuation_mask[row, :len(tokens)] = 1
    token_logprobs = first_logprobs[prompt_of_row, continuation_ids[:, 0]][:, None]
    if longest > 1:
        # Tokens 1.. are predicted from the prompt plus the continuation's earlier tokens.
        cache = _rows_of(state.cache, prompt_of_row)
        mask = torch.cat([state.mask[prompt_of_row], continuation_mask[:, :-1]], dim=-1)
        positions = state.next_position[prompt_of_row] + torch.arange(longest - 1, device=device)[None]
        logits, _ = forward_step(model, continuation_ids[:, :-1], mask, positions, cache, logits_to_keep=0)
        logits = logits.float()
        # log_softmax at the target only: no second vocabulary-sized tensor.
        later = logits.gather(-1, continuation_ids[:, 1:, None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)
        token_logprobs = torch.cat([token_logprobs, later], dim=1)
    scores = []
    for row, (_, tokens) in enumerate(rows):
        per_token = token_logprobs[row, :len(tokens)].tolist()
        total = sum(per_token)
        scores.append(ContinuationScore(total, total / len(tokens), per_token))
    return scores


def score_continuations(model, prompt_tokens: list[int], continuations: list[list[int]],
                        pad_id: int) -> list[ContinuationScore]:
    """log P(continuation | prompt) for each continuation: the total and the per-token mean."""
    if not prompt_tokens or not continuations:
        raise ValueError("score_continuations() needs a non-empty prompt and continuations")
    if len(prompt_tokens) == 1:
        return score_batch(model, [prompt_tokens], [continuations], pad_id)[0]
    # All but the last prompt token are computed once and shared by every continuation.
    return score_batch(model, [prompt_tokens[-1:]], [continuations], pad_id,
                       prefixes=[prompt_tokens[:-1]], prefix_index=[0])[0]
