"""Likelihood of candidate continuations, computing each shared prompt part only once.

A prompt is run once and its KV cache copied to every continuation scored after it, so
ranking N candidate answers after a long context costs the context once, not N times.
"""

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
                max_rows: int = 64) -> list[list[ContinuationScore]]:
    """log P(continuation | prefix + prompt) for every continuation of every prompt.

    Prompt i is `prefixes[prefix_index[i]] + prompts[i]` (or `prompts[i]` without prefixes);
    `continuations[i]` are its candidates. Each prefix is computed once, each prompt once, and
    each continuation only over its own tokens. At most `max_rows` continuations go through
    the model together, which bounds the memory that the copied caches take.
    """
    if any(len(c) == 0 for group in continuations for c in group):
        raise ValueError("continuations must not be empty")
    if any(len(prompts[i]) == 0 for i, group in enumerate(continuations) if group):
        raise ValueError("score_batch() needs at least one prompt token (after any prefix) per prompt")
    scores = [[] for _ in prompts]
    for chunk in _chunks(continuations, max_rows):
        used = sorted({prefix_index[i] for i in chunk}) if prefixes else []
        slot = {p: n for n, p in enumerate(used)}
        chunk_scores = _score_prompts(model, [prompts[i] for i in chunk], [continuations[i] for i in chunk], pad_id,
                                      [prefixes[p] for p in used] or None,
                                      [slot[prefix_index[i]] for i in chunk] if prefixes else None)
        for i, group_scores in zip(chunk, chunk_scores):
            scores[i] = group_scores
    return scores


def _chunks(continuations: list[list[list[int]]], max_rows: int) -> list[list[int]]:
    """Prompt indices grouped so that each group has at most `max_rows` continuations
    (a prompt with more than that forms a group of its own)."""
    chunks, current, rows = [], [], 0
    for i, group in enumerate(continuations):
        if not group:
            continue
        if current and rows + len(group) > max_rows:
            chunks.append(current)
            current, rows = [], 0
        current.append(i)
        rows += len(group)
    return chunks + [current] if current else chunks


def _score_prompts(model, prompts, continuations, pad_id, prefixes, prefix_index) -> list[list[ContinuationScore]]:
    device = model.device
    state = prefill(model, prompts, pad_id, prefixes, prefix_index)
    # The last prompt position predicts every continuation's first token.
    first_logprobs = torch.log_softmax(state.logits[:, -1].float(), dim=-1)
    rows = [(i, c) for i, group in enumerate(continuations) for c in group]
    prompt_of_row = torch.tensor([i for i, _ in rows], dtype=torch.long, device=device)
    longest = max(len(c) for _, c in rows)
    continuation_ids = torch.full((len(rows), longest), pad_id, dtype=torch.long, device=device)
    continuation_mask = torch.zeros((len(rows), longest), dtype=torch.long, device=device)
    for row, (_, tokens) in enumerate(rows):  # right padding: causal attention never sees it
        continuation_ids[row, :len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        continuation_mask[row, :len(tokens)] = 1
    token_logprobs = first_logprobs[prompt_of_row, continuation_ids[:, 0]][:, None]
    if longest > 1:
        state.cache.batch_select_indices(prompt_of_row)  # one cache row per continuation
        mask = torch.cat([state.mask[prompt_of_row], continuation_mask], dim=-1)
        positions = state.next_position[prompt_of_row] + torch.arange(longest, device=device)[None]
        logits, _ = forward_step(model, continuation_ids[:, :-1], mask[:, :-1], positions[:, :-1], state.cache,
                                 logits_to_keep=0)
        logits = logits.float()
        # log_softmax at the target only: no second vocabulary-sized tensor.
        later = logits.gather(-1, continuation_ids[:, 1:, None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)
        token_logprobs = torch.cat([token_logprobs, later], dim=1)
    scores = [[] for _ in prompts]
    for row, (i, tokens) in enumerate(rows):
        per_token = token_logprobs[row, :len(tokens)].tolist()
        total = sum(per_token)
        scores[i].append(ContinuationScore(total, total / len(tokens), per_token))
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
