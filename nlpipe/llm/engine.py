"""`Llama`: a causal LM, its tokenizer and its generation settings, loaded on first use.

Loading is lazy so that building or validating a pipeline, or saving one to disk, never
pays for the weights.
"""

from dataclasses import dataclass, field
from enum import Enum
from functools import partial
from pathlib import Path
from typing import Iterator

import torch

from ..errors import Errors, ModelError, first_line
from . import catalog
from .batching import token_groups
from .chat_template import render_chat
from .devices import init_distributed, local_device, resolve_dtype
from .generation import generate
from .loading import LoadedModel, load_model
from .reader import ReaderConfig, reader_inputs
from .scoring import ContinuationScore, score_batch


class FailureKind(str, Enum):
    CONTEXT_OVERFLOW = "context_overflow"  # prompt + new tokens longer than the context window
    OUT_OF_MEMORY = "out_of_memory"  # did not fit on the device even alone
    BAD_INPUT = "bad_input"  # an empty prompt or continuation


@dataclass
class Failure:
    """Why one row got no result; the other rows of the call are unaffected."""

    kind: FailureKind
    message: str


@dataclass
class Request:
    """One prompt for the model. Its first `shared` tokens are the same in other requests of the
    call (a document's context): they are computed once for all of them. `continuations` are
    what `rank` scores after the prompt."""

    tokens: list[int]
    shared: int = 0
    continuations: list[list[int]] = field(default_factory=list)


@dataclass
class PromptBatch:
    """Prompts whose shared prefixes are stored once: prompt i is prefixes[prefix_index[i]] + suffixes[i]."""

    suffixes: list[list[int]]
    prefixes: list[list[int]] = field(default_factory=list)
    prefix_index: list[int] = field(default_factory=list)

    @classmethod
    def of(cls, requests: "list[Request]") -> "PromptBatch":
        # A suffix keeps at least one token: it is where the next-token logits come from.
        cuts = [min(r.shared, len(r.tokens) - 1) for r in requests]
        slots: dict[tuple, int] = {}
        for request, cut in zip(requests, cuts):
            slots.setdefault(tuple(request.tokens[:cut]), len(slots))
        if not any(slots) or len(slots) == len(requests):
            # Nothing is shared: one pass over whole prompts beats a prefix pass plus a suffix pass.
            return cls([list(r.tokens) for r in requests])
        return cls([r.tokens[cut:] for r, cut in zip(requests, cuts)], [list(p) for p in slots],
                   [slots[tuple(r.tokens[:cut])] for r, cut in zip(requests, cuts)])


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
        return self.load().context_length

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
        (in transformers' sandboxed Jinja environment, so a template that reaches for Python
        internals fails instead of running, and within a budget, so that one that would fill
        memory fails too: see chat_template), or as plain turns for a base model without one
        (Meta's Llama and Llama 2 base checkpoints)."""
        tokenizer = self.tokenizer
        if not tokenizer.chat_template:
            return "\n\n".join(m["content"] for m in messages) + "\nAnswer:"
        try:
            return render_chat(tokenizer, messages)
        except Exception as err:  # jinja2's SecurityError, TemplateError, or a template's own raise
            raise ModelError(Errors.E024.format(path=self.path, reason=first_line(err))) from None

    def encode_chat(self, messages: list[dict]) -> list[int]:
        """Token ids of `messages`, ready for the reply."""
        text = self.chat_text(messages)
        if self.tokenizer.chat_template:
            # The rendered text already holds its special tokens (BOS, turn markers).
            return self.encode_text(text)
        return self.tokenizer(text)["input_ids"]  # a base model's BOS comes from the tokenizer

    def encode_text(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def count_tokens(self, text: str) -> int:
        return len(self.encode_text(text))

    def as_requests(self, prompts) -> list[Request]:
        """Requests from strings (tokenized with the tokenizer's special tokens), token ids or Requests."""
        return [p if isinstance(p, Request) else
                Request(self.tokenizer(p)["input_ids"] if isinstance(p, str) else list(p)) for p in prompts]

    def complete(self, prompts: "list[str | list[int] | Request]", *, max_gen_len: int | None = None,
                 temperature: float | None = None, top_p: float | None = None, seed: int | None = None,
                 echo: bool = False) -> "list[Completion | Failure]":
        """Continuations of `prompts` with Meta's generate() semantics, one Completion or Failure
        per prompt in order; unset arguments take the configured settings."""
        results = [None] * len(prompts)
        for row, result in self.complete_stream(prompts, max_gen_len=max_gen_len, temperature=temperature,
                                                top_p=top_p, seed=seed, echo=echo):
            results[row] = result
        return results

    def complete_stream(self, prompts, *, max_gen_len=None, temperature=None, top_p=None, seed=None,
                        echo=False) -> "Iterator[tuple[int, Completion | Failure]]":
        """(row, Completion or Failure) for every prompt, a group of similar length at a time."""
        requests = self.as_requests(prompts)
        settings = GenerationSettings(
            max_gen_len=self.max_new_tokens if max_gen_len is None else max_gen_len,
            temperature=self.temperature if temperature is None else temperature,
            top_p=self.top_p if top_p is None else top_p,
            seed=self.seed if seed is None else seed, echo=echo)
        costs = [len(r.tokens) + settings.max_gen_len for r in requests]
        run = partial(self._complete, requests, settings)
        order = sorted(range(len(requests)), key=costs.__getitem__)
        yield from self._run_groups(requests, costs, order, run, settings.max_gen_len)

    def rank(self, requests: list[Request]) -> "list[list[ContinuationScore] | Failure]":
        """Log-probabilities of each request's continuations after its prompt, one list (in the
        order of its continuations) or Failure per request."""
        results = [None] * len(requests)
        for row, result in self.rank_stream(requests):
            results[row] = result
        return results

    def rank_stream(self, requests: list[Request]) -> "Iterator[tuple[int, list[ContinuationScore] | Failure]]":
        """(row, scores or Failure) for every request, in order, a group at a time: a document's
        requests are consecutive, so they stay together and share its context."""
        # The cost of a row is its prompt plus its continuations packed end to end; each
        # continuation's positions start right after the prompt, where a reply would go, so the
        # window must hold the prompt and max_new_tokens as it would for generating.
        costs = [len(r.tokens) + sum(len(c) - 1 for c in r.continuations) for r in requests]
        yield from self._run_groups(requests, costs, list(range(len(requests))), partial(self._rank, requests),
                                    self.max_new_tokens)

    def _run_groups(self, requests: list[Request], costs: list[int], order: list[int], run,
                    new_tokens: int) -> Iterator:
        """Every row's result: rows that cannot run get their Failure at once; the others run in
        consecutive groups (in `order`) of at most max_batch_tokens (rows x costliest row)."""
        runnable = []
        for row in order:
            failure = self._check(requests[row], new_tokens)
            if failure is not None:
                yield row, failure
            else:
                runnable.append(row)
        for group in token_groups(runnable, costs, self.max_batch_tokens):
            yield from zip(group, self._halving_on_oom(group, run))

    def read_stream(self, rows: "list[tuple[list[int], list[int]]]", config: ReaderConfig
                    ) -> "Iterator[tuple[int, torch.Tensor | Failure]]":
        """(row, what a reader of `config` reads of it (llm.reader.reader_inputs), or Failure) for
        every (question ids, context ids) row. Rows too long for the window get their Failure
        first, the others follow in order, a group at a time."""
        requests = [Request(question + context) for question, context in rows]
        costs = [len(r.tokens) for r in requests]
        run = partial(self._read, rows, config)
        yield from self._run_groups(requests, costs, list(range(len(rows))), run, 0)

    def _read(self, rows, config: ReaderConfig, group: list[int]) -> list[torch.Tensor]:
        return reader_inputs(self.model, [rows[r] for r in group], config, self.pad_id)

    def _check(self, request: Request, new_tokens: int) -> Failure | None:
        if not request.tokens or any(not c for c in request.continuations):
            return Failure(FailureKind.BAD_INPUT, Errors.E080)
        needed = len(request.tokens) + max([new_tokens, *map(len, request.continuations)])
        if needed > self.context_length:
            return Failure(FailureKind.CONTEXT_OVERFLOW, Errors.E018.format(
                n_tokens=len(request.tokens), context=self.context_length, max_new=needed - len(request.tokens)))
        return None

    def _halving_on_oom(self, rows: list[int], run) -> list:
        """`run(rows)`, one result per row. Out of device memory: retry in two halves, down to
        single rows; a row that does not fit even alone fails, and the rest still run."""
        try:
            return run(rows)
        except torch.OutOfMemoryError as err:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            if len(rows) == 1:
                reason = first_line(err)
                return [Failure(FailureKind.OUT_OF_MEMORY, Errors.E021.format(device=self.device, reason=reason))]
            half = len(rows) // 2
            return self._halving_on_oom(rows[:half], run) + self._halving_on_oom(rows[half:], run)

    def score(self, prompt: list[int], continuations: list[list[int]]) -> "list[ContinuationScore]":
        """Total and mean log-probability of each continuation after `prompt` (computed once)."""
        [result] = self.rank([Request(list(prompt), continuations=continuations)])
        if isinstance(result, Failure):
            raise ModelError(result.message)
        return result

    @property
    def device(self) -> torch.device:
        return self.model.device

    def _rank(self, requests: list[Request], rows: list[int]) -> list[list[ContinuationScore]]:
        batch = PromptBatch.of([requests[r] for r in rows])
        return score_batch(self.model, batch.suffixes, [requests[r].continuations for r in rows], self.pad_id,
                           batch.prefixes or None, batch.prefix_index or None, max_tokens=self.max_batch_tokens)

    def _complete(self, requests: list[Request], settings: GenerationSettings, rows: list[int]) -> list[Completion]:
        # echo returns whole prompts, so it runs them whole.
        batch = PromptBatch.of([Request(requests[r].tokens, 0 if settings.echo else requests[r].shared) for r in rows])
        generator = None
        if settings.temperature > 0:
            generator = torch.Generator(device=self.device).manual_seed(settings.seed)
        generations = generate(self.model, batch.suffixes, max_gen_len=settings.max_gen_len, pad_id=self.pad_id,
                               eos_ids=self.eos_ids, temperature=settings.temperature, top_p=settings.top_p,
                               logprobs=True, echo=settings.echo, generator=generator,
                               prefixes=batch.prefixes or None, prefix_index=batch.prefix_index or None)
        return [Completion(text=self.tokenizer.decode(g.tokens, skip_special_tokens=True).strip(),
                           tokens=g.tokens, logprobs=g.logprobs) for g in generations]

