"""Likelihood of candidate continuations, computing each shared prompt part only once.

A shared prefix (a document's context) is run once. Then each prompt's own tokens and ALL of
its candidate continuations go through the model together, as one sequence: the prompt part
attends causally, and each candidate attends to the prompt and to its own earlier tokens only
(a block attention mask). Ranking N candidates after a long context thus costs the context once
and the prompt and candidate tokens once, in one forward pass, with no per-candidate copy of
the KV cache.
"""

from dataclasses import dataclass

import torch

from .batching import token_groups
from .generation import cache_rows, forward_step, left_pad, prefill_prefixes


@dataclass
class ContinuationScore:
    total_logprob: float
    mean_logprob: float
    token_logprobs: list[float]


@dataclass
class PackedRow:
    """One prompt followed by some of its continuations laid end to end: one row of a pass."""

    prompt: int  # index into the prompts
    items: list[tuple[int, list[int]]]  # (continuation index, tokens)

    @property
    def width(self) -> int:  # a continuation's last token is predicted, never fed
        return sum(len(tokens) - 1 for _, tokens in self.items)


@torch.inference_mode()
def score_batch(model, prompts: list[list[int]], continuations: list[list[list[int]]], pad_id: int,
                prefixes: list[list[int]] | None = None, prefix_index: list[int] | None = None,
                max_tokens: int = 1024) -> list[list[ContinuationScore]]:
    """log P(continuation | prefix + prompt) for every continuation of every prompt.

    Prompt i is `prefixes[prefix_index[i]] + prompts[i]` (or `prompts[i]` without prefixes);
    `continuations[i]` are its candidates. Each prefix is computed once; each prompt with its
    continuations in passes whose packed continuation tokens stay within `max_tokens` (this
    bounds the memory of the logits, which are vocabulary-sized per token).
    """
    if any(len(c) == 0 for group in continuations for c in group):
        raise ValueError("continuations must not be empty")
    scored = [i for i, group in enumerate(continuations) if group]
    if any(len(prompts[i]) == 0 for i in scored):
        raise ValueError("score_batch() needs at least one prompt token (after any prefix) per prompt")
    scores = [[None] * len(group) for group in continuations]
    prefix = prefill_prefixes(model, prefixes, pad_id) if prefixes else None
    for chunk in _passes(_packed_rows(scored, continuations, max_tokens), max_tokens):
        logprobs = _score_rows(model, chunk, prompts, prefix, prefix_index, pad_id)
        for row, row_logprobs in zip(chunk, logprobs):
            for j, per_token in row_logprobs.items():
                total = sum(per_token)
                scores[row.prompt][j] = ContinuationScore(total, total / len(per_token), per_token)
    return scores


def _packed_rows(scored: list[int], continuations, max_tokens: int) -> list[PackedRow]:
    """Each prompt with its continuations, packed into rows of at most `max_tokens` continuation
    tokens; a prompt whose continuations are all one token long still gets its row."""
    rows = []
    for i in scored:
        row = PackedRow(i, [])
        for j, tokens in enumerate(continuations[i]):
            if row.items and row.width + len(tokens) - 1 > max_tokens:
                rows.append(row)
                row = PackedRow(i, [])
            row.items.append((j, tokens))
        rows.append(row)
    return rows


def _passes(rows: list[PackedRow], max_tokens: int) -> list[list[PackedRow]]:
    """Consecutive rows, cut by token_groups with a row's packed width as its cost: the logits of
    a pass are vocabulary-sized for every packed token, so rows x widest is what `max_tokens` bounds."""
    groups = token_groups(list(range(len(rows))), [row.width for row in rows], max_tokens)
    return [[rows[i] for i in group] for group in groups]


def _score_rows(model, rows: list[PackedRow], prompts, prefix, prefix_index, pad_id: int) -> list[dict]:
    """For each row, {continuation index: per-token log-probs}, from ONE forward pass.

    Row layout: [prompt tokens, left-padded | continuation blocks, right-padded], after the
    row's prefix in the KV cache.
    """
    device = model.device
    n_rows = len(rows)
    prompt_ids, prompt_mask = left_pad([prompts[row.prompt] for row in rows], pad_id, device)
    n_prompt, width = prompt_ids.shape[1], max(row.width for row in rows)
    packed_ids, targets, offsets, sees_packed = (t.to(device) for t in _pack(rows, width, pad_id))
    prompt_real = prompt_mask.bool()
    causal = torch.ones(n_prompt, n_prompt, dtype=torch.bool, device=device).tril()
    # Prompt tokens: causal over the real prompt tokens (a left-pad position sees itself).
    prompt_sees_prompt = (causal[None] & prompt_real[:, None, :]) | torch.eye(n_prompt, dtype=torch.bool, device=device)
    packed_sees_prompt = prompt_real[:, None, :].expand(-1, width, -1)
    allowed = torch.cat([
        torch.cat([prompt_sees_prompt, torch.zeros(n_rows, n_prompt, width, dtype=torch.bool, device=device)], -1),
        torch.cat([packed_sees_prompt, sees_packed], -1)], dim=1)
    prompt_start = torch.zeros((n_rows, 1), dtype=torch.long, device=device)
    cache = None
    if prefix is not None:
        prefix_cache, prefix_mask = prefix
        rows_prefix = torch.tensor([prefix_index[row.prompt] for row in rows], dtype=torch.long, device=device)
        cache = cache_rows(prefix_cache, rows_prefix)
        allowed = torch.cat([prefix_mask[rows_prefix].bool()[:, None, :].expand(-1, n_prompt + width, -1), allowed], -1)
        prompt_start = prefix_mask[rows_prefix].sum(-1, keepdim=True)
    prompt_positions = prompt_start + (prompt_mask.cumsum(-1) - 1).clamp(min=0)
    packed_positions = prompt_positions[:, -1:] + 1 + offsets
    dtype = getattr(model, "dtype", torch.float32)  # the mask adds to attention scores of this dtype
    attention = torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(~allowed, torch.finfo(dtype).min)
    logits, _ = forward_step(model, torch.cat([prompt_ids, packed_ids], -1), attention[:, None],
                             torch.cat([prompt_positions, packed_positions], -1), cache, logits_to_keep=width + 1)
    logits = logits.float()
    log_norm = torch.logsumexp(logits, dim=-1)
    # The prompt's last position predicts every continuation's first token.
    first_ids = [[tokens[0] for _, tokens in row.items] for row in rows]
    results = []
    later = (logits[:, 1:].gather(-1, targets[..., None]).squeeze(-1) - log_norm[:, 1:]).tolist() if width else []
    for r, row in enumerate(rows):
        first = (logits[r, 0, first_ids[r]] - log_norm[r, 0]).tolist()
        row_logprobs, start = {}, 0
        for (j, tokens), first_logprob in zip(row.items, first):
            n = len(tokens) - 1
            row_logprobs[j] = [first_logprob, *(later[r][start:start + n] if n else [])]
            start += n
        results.append(row_logprobs)
    return results


def _pack(rows: list[PackedRow], width: int, pad_id: int):
    """(input ids, target ids, offset within its continuation, which packed tokens each packed
    token sees) for continuation blocks laid end to end, right-padded to `width`."""
    n_rows = len(rows)
    packed_ids = torch.full((n_rows, width), pad_id, dtype=torch.long)
    targets = torch.zeros((n_rows, width), dtype=torch.long)
    offsets = torch.zeros((n_rows, width), dtype=torch.long)
    # A block's tokens see its earlier tokens; padding sees itself only (a query that attends
    # to nothing would give NaN).
    sees_packed = torch.eye(width, dtype=torch.bool).repeat(n_rows, 1, 1)
    for r, row in enumerate(rows):
        start = 0
        for _, tokens in row.items:
            n = len(tokens) - 1
            packed_ids[r, start:start + n] = torch.tensor(tokens[:-1])
            targets[r, start:start + n] = torch.tensor(tokens[1:])
            offsets[r, start:start + n] = torch.arange(n)
            sees_packed[r, start:start + n, start:start + n] = torch.ones(n, n, dtype=torch.bool).tril()
            start += n
    return packed_ids, targets, offsets, sees_packed
