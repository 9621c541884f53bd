"""Likelihood of candidate continuations, computing each shared prompt part only once.

A prompt is run once; then all of its candidate continuations are packed into ONE sequence
after it, with an attention mask that lets each candidate see the prompt and its own earlier
tokens only. Ranking N candidate answers after a long context thus costs the context once and
the candidates' own tokens once, with no per-candidate copy of the prompt's KV cache.
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


@dataclass
class PackedRow:
    """Continuations of one prompt laid end to end: what one row of a scoring pass holds."""

    prompt: int  # row of the prefilled state
    items: list[tuple[int, int, list[int]]]  # (prompt index, candidate index, tokens)

    @property
    def width(self) -> int:  # a continuation's last token is predicted, never fed
        return sum(len(tokens) - 1 for _, _, tokens in self.items)


@torch.inference_mode()
def score_batch(model, prompts: list[list[int]], continuations: list[list[list[int]]], pad_id: int,
                prefixes: list[list[int]] | None = None, prefix_index: list[int] | None = None,
                max_tokens: int = 1024) -> list[list[ContinuationScore]]:
    """log P(continuation | prefix + prompt) for every continuation of every prompt.

    Prompt i is `prefixes[prefix_index[i]] + prompts[i]` (or `prompts[i]` without prefixes);
    `continuations[i]` are its candidates. Each prefix is computed once, each prompt once, and
    the continuations in packed passes of at most `max_tokens` tokens (this bounds the memory
    of the logits, which are vocabulary-sized per token).
    """
    if any(len(c) == 0 for group in continuations for c in group):
        raise ValueError("continuations must not be empty")
    scored = [i for i, group in enumerate(continuations) if group]
    if any(len(prompts[i]) == 0 for i in scored):
        raise ValueError("score_batch() needs at least one prompt token (after any prefix) per prompt")
    scores = [[None] * len(group) for group in continuations]
    if not scored:
        return scores
    state = prefill(model, [prompts[i] for i in scored], pad_id, prefixes,
                    [prefix_index[i] for i in scored] if prefixes else None)
    # Each prompt's last position predicts the first token of all its continuations.
    first_logprobs = torch.log_softmax(state.logits[:, -1].float(), dim=-1)
    later = {}
    for chunk in _chunks(_packed_rows(scored, continuations, max_tokens), max_tokens):
        later.update(_score_packed(model, state, chunk, pad_id))
    for row, i in enumerate(scored):
        first = first_logprobs[row, [tokens[0] for tokens in continuations[i]]].tolist()
        for j, tokens in enumerate(continuations[i]):
            per_token = [first[j], *later.get((i, j), [])]
            total = sum(per_token)
            scores[i][j] = ContinuationScore(total, total / len(tokens), per_token)
    return scores


def _packed_rows(scored: list[int], continuations, max_tokens: int) -> list[PackedRow]:
    """Each prompt's multi-token continuations, packed into rows of at most `max_tokens`."""
    rows = []
    for state_row, i in enumerate(scored):
        row = PackedRow(state_row, [])
        for j, tokens in enumerate(continuations[i]):
            if len(tokens) < 2:
                continue  # its one token is scored from the prompt's last position
            if row.items and row.width + len(tokens) - 1 > max_tokens:
                rows.append(row)
                row = PackedRow(state_row, [])
            row.items.append((i, j, tokens))
        if row.items:
            rows.append(row)
    return rows


def _chunks(rows: list[PackedRow], max_tokens: int) -> list[list[PackedRow]]:
    """Consecutive rows whose padded size (rows x widest) stays within `max_tokens`."""
    chunks, current, widest = [], [], 0
    for row in rows:
        if current and max(widest, row.width) * (len(current) + 1) > max_tokens:
            chunks.append(current)
            current, widest = [], 0
        current.append(row)
        widest = max(widest, row.width)
    return chunks + [current] if current else chunks


def _score_packed(model, state, rows: list[PackedRow], pad_id: int) -> dict:
    """{(prompt, candidate): log-probs of its tokens 1..} for the continuations in `rows`."""
    device = model.device
    width = max(row.width for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    targets = torch.zeros((len(rows), width), dtype=torch.long)
    offsets = torch.zeros((len(rows), width), dtype=torch.long)  # position within its continuation
    # Packed tokens attend to their own continuation's earlier tokens; padding to itself only
    # (a query that attends to nothing would give NaN).
    sees_packed = torch.eye(width, dtype=torch.bool).repeat(len(rows), 1, 1)
    for r, row in enumerate(rows):
        start = 0
        for _, _, tokens in row.items:
            n = len(tokens) - 1
            input_ids[r, start:start + n] = torch.tensor(tokens[:-1])
            targets[r, start:start + n] = torch.tensor(tokens[1:])
            offsets[r, start:start + n] = torch.arange(n)
            sees_packed[r, start:start + n, start:start + n] = torch.ones(n, n, dtype=torch.bool).tril()
            start += n
    prompt_rows = torch.tensor([row.prompt for row in rows], dtype=torch.long, device=device)
    sees_prompt = state.mask[prompt_rows].bool()[:, None, :].expand(-1, width, -1)
    allowed = torch.cat([sees_prompt, sees_packed.to(device)], dim=-1)[:, None]
    dtype = next(model.parameters()).dtype
    attention = torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(~allowed, torch.finfo(dtype).min)
    positions = state.next_position[prompt_rows] + offsets.to(device)
    logits, _ = forward_step(model, input_ids.to(device), attention, positions, _rows_of(state.cache, prompt_rows),
                             logits_to_keep=0)
    logits = logits.float()
    # log_softmax at the target only: no second vocabulary-sized tensor.
    target_logprobs = (logits.gather(-1, targets.to(device)[..., None]).squeeze(-1)
                       - torch.logsumexp(logits, dim=-1)).tolist()
    result = {}
    for r, row in enumerate(rows):
        start = 0
        for i, j, tokens in row.items:
            result[(i, j)] = target_logprobs[r][start:start + len(tokens) - 1]
            start += len(tokens) - 1
    return result


def _rows_of(cache, rows: torch.Tensor):
    """A cache holding `rows` of `cache` (repeats allowed), leaving `cache` as it was."""
    if hasattr(cache, "layers"):  # transformers 5: new tensors go into copies of the layer objects
        selected = copy.copy(cache)
        selected.layers = [copy.copy(layer) for layer in cache.layers]
    else:
        selected = copy.deepcopy(cache)
    selected.batch_select_indices(rows)
    return selected
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
