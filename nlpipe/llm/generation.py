"""Batched generation with a KV cache, following Meta's llama `generate()`.

Prompts of different lengths are left-padded so every row's next token sits in the last
column; the attention mask hides the padding and position ids restart at each row's first
real token, so a padded row computes exactly what it would compute alone.
"""

import copy
from dataclasses import dataclass

import torch


@dataclass
class Generation:
    tokens: list[int]
    # log-probability of each token in `tokens` under the model (None unless asked for).
    logprobs: list[float] | None = None


def sample_top_p(probs: torch.Tensor, p: float, generator: torch.Generator | None) -> torch.Tensor:
    """Sample from the smallest set of tokens whose probability mass exceeds `p` (nucleus sampling)."""
    probs_sorted, token_order = torch.sort(probs, dim=-1, descending=True)
    mass_before = torch.cumsum(probs_sorted, dim=-1) - probs_sorted
    probs_sorted[mass_before > p] = 0.0  # the most likely token always survives: its mass_before is 0
    probs_sorted.div_(probs_sorted.sum(dim=-1, keepdim=True))
    choice = torch.multinomial(probs_sorted, num_samples=1, generator=generator)
    return torch.gather(token_order, -1, choice).squeeze(-1)


def forward_step(model, input_ids, attention_mask, position_ids, cache, logits_to_keep=1):
    """One forward pass that extends `cache`; returns (logits, cache)."""
    # `cache`, as transformers names it since it deprecated `past_key_values` (setup.cfg pins
    # the releases that have it).
    outputs = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                    use_cache=True, logits_to_keep=logits_to_keep, cache=cache)
    return outputs.logits, outputs.cache


def left_pad(prompt_tokens: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(token ids, attention mask), both (batch, longest prompt), padding on the left."""
    longest = max(len(tokens) for tokens in prompt_tokens)
    token_ids = torch.full((len(prompt_tokens), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompt_tokens), longest), dtype=torch.long)
    for row, tokens in enumerate(prompt_tokens):
        token_ids[row, longest - len(tokens):] = torch.tensor(tokens, dtype=torch.long)
        mask[row, longest - len(tokens):] = 1
    return token_ids.to(device), mask.to(device)


def prefill_prefixes(model, prefixes: list[list[int]], pad_id: int):
    """(KV cache, attention mask) of the distinct `prefixes`, left-padded and run once: each
    prompt that starts with one then takes its row (cache_rows)."""
    prefix_ids, prefix_mask = left_pad(prefixes, pad_id, model.device)
    positions = (prefix_mask.cumsum(-1) - 1).clamp(min=0)
    _, cache = forward_step(model, prefix_ids, prefix_mask, positions, None)
    return cache, prefix_mask


def cache_rows(cache, rows: torch.Tensor):
    """A cache holding `rows` of `cache` (repeats allowed), leaving `cache` as it was.

    The one place that knows the cache's layout. setup.cfg pins transformers 5 (>=5.24,<6), whose
    DynamicCache is a list of layer objects (`cache.layers`), each holding its key and value
    tensors; `batch_select_indices` rebinds a layer's tensors to new, indexed ones and never
    writes into the old. So shallow copies of the container and of its layers keep `cache`
    intact, without copying a whole cache first (a deepcopy would)."""
    selected = copy.copy(cache)
    selected.layers = [copy.copy(layer) for layer in cache.layers]
    selected.batch_select_indices(rows)
    return selected


@dataclass
class Prefilled:
    """The state after running the prompts: what decoding or scoring continues from."""

    logits: torch.Tensor  # (batch, kept positions, vocab) for the suffix positions
    cache: object
    mask: torch.Tensor  # (batch, prefix + suffix): 1 where a real token is
    suffix_ids: torch.Tensor  # (batch, longest suffix), left-padded
    next_position: torch.Tensor  # (batch, 1): position id of the next token


def prefill(model, suffixes: list[list[int]], pad_id: int, prefixes: list[list[int]] | None = None,
            prefix_index: list[int] | None = None, logits_to_keep: int = 1) -> Prefilled:
    """Run prompts through the model. Prompt i is `prefixes[prefix_index[i]] + suffixes[i]`:
    each distinct prefix is computed once and its KV cache copied to the rows that share it,
    so ten questions about one document pay for the document once."""
    device = model.device
    suffix_ids, suffix_mask = left_pad(suffixes, pad_id, device)
    if not prefixes:
        position_ids = (suffix_mask.cumsum(-1) - 1).clamp(min=0)
        logits, cache = forward_step(model, suffix_ids, suffix_mask, position_ids, None, logits_to_keep)
        return Prefilled(logits, cache, suffix_mask, suffix_ids, position_ids[:, -1:] + 1)
    cache, prefix_mask = prefill_prefixes(model, prefixes, pad_id)
    rows = torch.tensor(prefix_index, dtype=torch.long, device=device)
    cache = cache_rows(cache, rows)  # one cache row per prompt, duplicated from its prefix
    # Padding now sits between prefix and suffix; the mask hides it and positions skip it.
    mask = torch.cat([prefix_mask[rows], suffix_mask], dim=-1)
    position_ids = prefix_mask[rows].sum(-1, keepdim=True) + (suffix_mask.cumsum(-1) - 1).clamp(min=0)
    logits, cache = forward_step(model, suffix_ids, mask, position_ids, cache, logits_to_keep)
    return Prefilled(logits, cache, mask, suffix_ids, position_ids[:, -1:] + 1)


@torch.inference_mode()
def generate(
    model,
    prompt_tokens: list[list[int]],
    *,
    max_gen_len: int,
    pad_id: int,
    eos_ids: list[int],
    temperature: float = 0.0,
    top_p: float = 1.0,
    logprobs: bool = False,
    echo: bool = False,
    generator: torch.Generator | None = None,
    prefixes: list[list[int]] | None = None,
    prefix_index: list[int] | None = None,
) -> list[Generation]:
    """Continue each prompt by up to `max_gen_len` tokens; each row stops at its own EOS.

    temperature 0 is greedy decoding. With `echo`, the prompt is returned in front of the
    generated tokens (its first token's log-prob is 0, as in Meta's code: nothing predicts it).
    The EOS token itself is not returned. With `prefixes`, prompt i is
    `prefixes[prefix_index[i]] + prompt_tokens[i]` and each prefix is computed once.
    """
    if not prompt_tokens or any(len(tokens) == 0 for tokens in prompt_tokens):
        raise ValueError("generate() needs at least one non-empty prompt")
    if echo and prefixes:
        raise ValueError("echo returns the whole prompt; pass whole prompts instead of prefixes")
    device = model.device
    state = prefill(model, prompt_tokens, pad_id, prefixes, prefix_index, logits_to_keep=0 if echo else 1)
    logits, cache, mask, next_position = state.logits, state.cache, state.mask, state.next_position
    if echo and logprobs:
        prompt_logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1).gather(
            -1, state.suffix_ids[:, 1:, None]).squeeze(-1)
    next_logits = logits[:, -1].float()
    eos = torch.tensor(eos_ids, dtype=torch.long, device=device)
    finished = torch.zeros(len(prompt_tokens), dtype=torch.bool, device=device)
    new_tokens, new_logprobs = [], []
    for step in range(max_gen_len):
        if temperature > 0:
            probs = torch.softmax(next_logits / temperature, dim=-1)
            next_token = sample_top_p(probs, top_p, generator)
        else:
            next_token = torch.argmax(next_logits, dim=-1)
        next_token = torch.where(finished, pad_id, next_token)
        new_tokens.append(next_token)
        if logprobs:
            new_logprobs.append(torch.log_softmax(next_logits, dim=-1).gather(-1, next_token[:, None]).squeeze(-1))
        finished |= torch.isin(next_token, eos)
        if bool(finished.all()) or step == max_gen_len - 1:
            break
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)
        logits, cache = forward_step(model, next_token[:, None], mask, next_position, cache)
        next_position = next_position + 1
        next_logits = logits[:, -1].float()

    generated = torch.stack(new_tokens, dim=1).tolist() if new_tokens else [[] for _ in prompt_tokens]
    generated_logprobs = torch.stack(new_logprobs, dim=1).tolist() if new_logprobs else [[] for _ in prompt_tokens]
    eos_set = set(eos_ids)
    results = []
    for row, tokens in enumerate(generated):
        length = next((i for i, t in enumerate(tokens) if t in eos_set), len(tokens))
        result = Generation(tokens=tokens[:length],
                            logprobs=generated_logprobs[row][:length] if logprobs else None)
        if echo:
            prompt = list(prompt_tokens[row])
            result.tokens = prompt + result.tokens
            if logprobs:
                first_real = state.suffix_ids.shape[1] - len(prompt)
                result.logprobs = [0.0] + prompt_logprobs[row, first_real:].tolist() + result.logprobs
        results.append(result)
    return results
