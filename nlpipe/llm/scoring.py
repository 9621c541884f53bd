"""Likelihood of several continuations of one prompt, computing the prompt only once.

The prompt is run once (batch of 1); its KV cache is then repeated for every continuation,
so ranking N candidate answers after a long context costs the context once, not N times.
"""

from dataclasses import dataclass

import torch

from .generation import forward_step


@dataclass
class ContinuationScore:
    total_logprob: float
    mean_logprob: float
    token_logprobs: list[float]


@torch.inference_mode()
def score_continuations(model, prompt_tokens: list[int], continuations: list[list[int]],
                        pad_id: int) -> list[ContinuationScore]:
    """log P(continuation | prompt) for each continuation: the total and the per-token mean."""
    if not prompt_tokens or not continuations or any(len(c) == 0 for c in continuations):
        raise ValueError("score_continuations() needs a non-empty prompt and non-empty continuations")
    device = model.device
    prompt_length = len(prompt_tokens)
    prompt_ids = torch.tensor([prompt_tokens], dtype=torch.long, device=device)
    prompt_positions = torch.arange(prompt_length, device=device)[None]
    logits, cache = forward_step(model, prompt_ids, torch.ones_like(prompt_ids), prompt_positions, None)
    # The prompt's last position predicts every continuation's first token.
    first_token_logprobs = torch.log_softmax(logits[0, -1].float(), dim=-1)

    n, longest = len(continuations), max(len(c) for c in continuations)
    continuation_ids = torch.full((n, longest), pad_id, dtype=torch.long, device=device)
    continuation_mask = torch.zeros((n, longest), dtype=torch.long, device=device)
    for row, tokens in enumerate(continuations):  # right padding: causal attention never sees it
        continuation_ids[row, :len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        continuation_mask[row, :len(tokens)] = 1
    cache.batch_repeat_interleave(n)
    mask = torch.cat([continuation_mask.new_ones((n, prompt_length)), continuation_mask], dim=-1)
    positions = prompt_length + torch.arange(longest, device=device)[None].expand(n, -1)
    logits, _ = forward_step(model, continuation_ids, mask, positions, cache, logits_to_keep=0)

    later_logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1).gather(
        -1, continuation_ids[:, 1:, None]).squeeze(-1)
    token_logprobs = torch.cat([first_token_logprobs[continuation_ids[:, :1]], later_logprobs], dim=1)
    token_logprobs = token_logprobs * continuation_mask
    results = []
    for row, tokens in enumerate(continuations):
        per_token = token_logprobs[row, :len(tokens)].tolist()
        total = sum(per_token)
        results.append(ContinuationScore(total, total / len(tokens), per_token))
    return results
