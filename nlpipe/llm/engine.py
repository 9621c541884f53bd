"""`Llama`: a causal LM, its tokenizer and its generation settings, loaded on first use.

Loading is lazy so that building or validating a pipeline, or saving one to disk, never
pays for the weights.
"""

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch

from ..errors import Errors, ModelError
from . import catalog
from .devices import init_distributed, local_device, resolve_dtype
from .generation import generate
from .loading import LoadedModel, load_model
from .scoring import ContinuationScore, score_batch, score_continuations


@dataclass
class PromptBatch:
    """Token-id prompts that may share prefixes: prompt i is prefixes[prefix_index[i]] + suffixes[i].
    Iterating or indexing gives whole prompts."""

    suffixes: list[list[int]]
    prefixes: list[list[int]] = field(default_factory=list)
    prefix_index: list[int] = field(default_factory=list)

    @classmethod
    def from_parts(cls, parts: list[tuple[list[int], list[int]]]) -> "PromptBatch":
        """From (prefix, suffix) pairs; equal prefixes are stored, and later computed, once."""
        slots: dict[tuple, int] = {}
        for prefix, _ in parts:
            slots.setdefault(tuple(prefix), len(slots))
        if not any(slots) or len(slots) == len(parts):
            # Nothing is shared: one pass over whole prompts beats a prefix pass plus a suffix pass.
            return cls([list(prefix) + list(suffix) for prefix, suffix in parts])
        return cls([list(s) for _, s in parts], [list(p) for p in slots], [slots[tuple(p)] for p, _ in parts])

    def __len__(self) -> int:
        return len(self.suffixes)

    def prefix(self, row: int) -> list[int]:
        return self.prefixes[self.prefix_index[row]] if self.prefixes else []

    def __getitem__(self, row: int) -> list[int]:
        return self.prefix(row) + self.suffixes[row]

    def __iter__(self):
        return (self[row] for row in range(len(self)))

    def lengths(self) -> list[int]:
        return [len(prompt) for prompt in self]

    def subset(self, rows) -> "PromptBatch":
        return PromptBatch.from_parts([(self.prefix(r), self.suffixes[r]) for r in rows])


@dataclass
class GenerationSettings:
    max_gen_len: int
    temperature: float
    top_p: float
    seed: int
    echo: bool


@dataclass
class Completion:
    text: str
    tokens: list[int]
    logprobs: list[float]
    error: str | None = None  # why this prompt got no generation (out of memory even alone)

    @property
    def mean_logprob(self) -> float | None:
        return sum(self.logprobs) / len(self.logprobs) if self.logprobs else None


class Llama:
    def __init__(self, path, device: str = "auto", dtype: str = "auto", max_new_tokens: int = 32,
                 temperature: float = 0.0, top_p: float = 1.0, seed: int = 0, max_batch_tokens: int = 8192):
        self.path = Path(path)
        self.device_name = device
        self.dtype_name = dtype
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.seed = seed
        self.max_batch_tokens = max_batch_tokens
        self._loaded: LoadedModel | None = None

    def __getstate__(self):
        # Pickled into spaCy worker processes (n_process > 1), which never generate: send the
        # settings, not the weights.
        return {**self.__dict__, "_loaded": None}

    def load(self, on_step=lambda *args: None) -> LoadedModel:
        if self._loaded is None:
            init_distributed()
            device = local_device(self.device_name)
            dtype = resolve_dtype(self.dtype_name, device)
            path = catalog.ensure(self.path, on_step)  # a known model: the per-user cache, fetched on first use
            self._loaded = load_model(path, device, dtype, allow_split=self.device_name == "auto")
        return self._loaded

    def use_path(self, path) -> None:
        """Point at another copy of the model; a model already loaded is dropped."""
        self.path = Path(path)
        self._loaded = None

    @property
    def model(self):
        return self.load().model

    @property
    def tokenizer(self):
        return self.load().tokenizer

    @property
    def context_length(self) -> int:
        return int(getattr(self.model.config, "max_position_embeddings", 2048))

    @property
    def eos_ids(self) -> list[int]:
        ids = {self.tokenizer.eos_token_id}
        configured = getattr(self.model.generation_config, "eos_token_id", None)
        ids.update(configured if isinstance(configured, list) else [configured])
        return sorted(i for i in ids if i is not None)

    @property
    def pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        if pad is None:
            if not self.eos_ids:
                raise ModelError(Errors.E019)
            pad = self.eos_ids[0]
        return pad

    def chat_text(self, messages: list[dict]) -> str:
        """`messages` rendered for the model, ready for the reply: through its chat template
        (transformers renders it in a sandboxed Jinja environment, so a template that reaches
        for Python internals fails instead of running), or as plain turns for a base model."""
        tokenizer = self.tokenizer
        if not tokenizer.chat_template:
            text = "\n\n".join(m["content"] for m in messages) + "\nAnswer:"
            return (tokenizer.bos_token or "") + text if getattr(tokenizer, "add_bos_token", False) else text
        try:
            return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        except Exception as err:  # jinja2's SecurityError, TemplateError, or a template's own raise
            raise ModelError(Errors.E024.format(path=self.path, reason=str(err).splitlines()[0])) from None

    def encode_chat(self, messages: list[dict]) -> list[int]:
        """Token ids of `messages`, ready for the reply."""
        return self.encode_text(self.chat_text(messages))

    def encode_chat_split(self, messages: list[dict], suffix_text: str) -> tuple[list[int], list[int]]:
        """Token ids of `messages` as (prefix, suffix), cut where the last occurrence of
        `suffix_text` begins: the prefix can then be shared by several prompts."""
        text = self.chat_text(messages)
        cut = text.rfind(suffix_text)
        cut = cut if cut > 0 else len(text)
        return self.encode_text(text[:cut]), self.encode_text(text[cut:])

    def encode_text(self, text: str) -> list[int]:
        # The rendered text already holds its special tokens (BOS, turn markers).
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def count_tokens(self, text: str) -> int:
        return len(self.encode_text(text))

    def complete(self, prompts: "list[str | list[int]] | PromptBatch", *, max_gen_len: int | None = None,
                 temperature: float | None = None, top_p: float | None = None, seed: int | None = None,
                 echo: bool = False) -> list[Completion]:
        """Continuations of `prompts` (strings, token ids, or a PromptBatch with shared prefixes)
        in one batched generation, with Meta's generate() semantics; unset arguments take the
        configured settings."""
        if not len(prompts):
            return []
        batch = self.as_batch(prompts)
        settings = GenerationSettings(
            max_gen_len=self.max_new_tokens if max_gen_len is None else max_gen_len,
            temperature=self.temperature if temperature is None else temperature,
            top_p=self.top_p if top_p is None else top_p,
            seed=self.seed if seed is None else seed, echo=echo)
        lengths = batch.lengths()
        completions: list[Completion | None] = [None] * len(batch)
        fitting = []
        for row, length in enumerate(lengths):
            if length + settings.max_gen_len > self.context_length:
                # This prompt fails alone; the rest of the batch is still answered.
                completions[row] = Completion("", [], [], error=Errors.E018.format(
                    n_tokens=length, context=self.context_length, max_new=settings.max_gen_len))
            else:
                fitting.append(row)
        for group in self.length_groups([lengths[r] for r in fitting], settings.max_gen_len):
            rows = [fitting[g] for g in group]
            for row, completion in zip(rows, self._halving_on_oom(
                    rows, lambda part: self._complete(batch.subset(part), settings),
                    lambda reason: Completion("", [], [], error=Errors.E021.format(device=self.device, n=1,
                                                                                   reason=reason)))):
                completions[row] = completion
        return completions

    def length_groups(self, prompt_lengths: list[int], new_tokens: int) -> list[list[int]]:
        """Row indices grouped by similar prompt length, each group within max_batch_tokens
        (rows x (longest prompt + new tokens)): little padding, bounded memory."""
        groups, current, longest = [], [], 0
        for row in sorted(range(len(prompt_lengths)), key=prompt_lengths.__getitem__):
            longest_if_added = max(longest, prompt_lengths[row] + new_tokens)
            if current and longest_if_added * (len(current) + 1) > self.max_batch_tokens:
                groups.append(current)
                current, longest_if_added = [], prompt_lengths[row] + new_tokens
            current.append(row)
            longest = longest_if_added
        return groups + [current] if current else groups

    def as_batch(self, prompts) -> "PromptBatch":
        if isinstance(prompts, PromptBatch):
            return prompts
        return PromptBatch([self.tokenizer(p)["input_ids"] if isinstance(p, str) else list(p) for p in prompts])

    def _check_length(self, prompt_lengths: list[int], new_tokens: int) -> None:
        limit = self.context_length
        for length in prompt_lengths:
            if length + new_tokens > limit:
                raise ModelError(Errors.E018.format(n_tokens=length, context=limit, max_new=new_tokens))

    def _halving_on_oom(self, rows: list[int], run, fail) -> list:
        """`run(rows)`, one result per row. Out of GPU memory: retry in two halves, down to single
        rows; a row that does not fit even alone gets `fail(reason)`, and the rest still run."""
        try:
            return run(rows)
        except torch.OutOfMemoryError as err:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            if len(rows) == 1:
                return [fail(str(err).strip().splitlines()[0])]
            half = len(rows) // 2
            return self._halving_on_oom(rows[:half], run, fail) + self._halving_on_oom(rows[half:], run, fail)

    def score(self, prompt: list[int], continuations: list[list[int]]) -> list[ContinuationScore]:
        """Total and mean log-probability of each continuation after `prompt` (prompt computed once)."""
        self._check_length([len(prompt)], max(len(c) for c in continuations))
        return score_continuations(self.model, prompt, continuations, self.pad_id)

    def score_batch(self, prompts: "PromptBatch",
                    continuations: list[list[list[int]]]) -> list[list[ContinuationScore] | None]:
        """Scores of `continuations[i]` after prompt i; shared prefixes are computed once.

        Prompts are scored in consecutive groups within max_batch_tokens (a document's
        questions are consecutive, so they stay together and share its prefix); a group that
        runs out of memory is halved, and a prompt that fails even alone gets None.
        """
        lengths = prompts.lengths()
        rows = [i for i, group in enumerate(continuations) if group]
        for i in rows:
            self._check_length([lengths[i]], max(len(c) for c in continuations[i]))
        scores: list[list[ContinuationScore] | None] = [[] for _ in continuations]
        groups, group = [], []
        for i in rows:
            if group and max(lengths[r] for r in [*group, i]) * (len(group) + 1) > self.max_batch_tokens:
                groups.append(group)
                group = []
            group.append(i)
        if group:
            groups.append(group)
        run = partial(self._score, prompts, continuations)
        for group in groups:
            for row, group_scores in zip(group, self._halving_on_oom(group, run, lambda reason: None)):
                scores[row] = group_scores
        return scores

    def _score(self, prompts: "PromptBatch", continuations, rows: list[int]) -> list[list[ContinuationScore]]:
        batch = prompts.subset(rows)
        return score_batch(self.model, batch.suffixes, [continuations[r] for r in rows], self.pad_id,
                           batch.prefixes or None, batch.prefix_index or None)

    @property
    def device(self) -> torch.device:
        return self.model.device

    def _complete(self, batch: "PromptBatch", settings: GenerationSettings) -> list[Completion]:
        generator = None
        if settings.temperature > 0:
            generator = torch.Generator(device=self.device).manual_seed(settings.seed)
        generations = generate(self.model, batch.suffixes, max_gen_len=settings.max_gen_len, pad_id=self.pad_id,
                               eos_ids=self.eos_ids, temperature=settings.temperature, top_p=settings.top_p,
                               logprobs=True, echo=settings.echo, generator=generator,
                               prefixes=batch.prefixes or None, prefix_index=batch.prefix_index or None)
        return [Completion(text=self.tokenizer.decode(g.tokens, skip_special_tokens=True).strip(),
                           tokens=g.tokens, logprobs=g.logprobs) for g in generations]
