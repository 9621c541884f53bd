"""`Llama`: a causal LM, its tokenizer and its generation settings, loaded on first use.

Loading is lazy so that building or validating a pipeline, or saving one to disk, never
pays for the weights.
"""

from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import Errors, ModelError
from . import catalog
from .devices import init_distributed, local_device, resolve_dtype
from .generation import generate
from .loading import LoadedModel, load_model
from .scoring import ContinuationScore, score_continuations


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
                 temperature: float = 0.0, top_p: float = 1.0, seed: int = 0):
        self.path = Path(path)
        self.device_name = device
        self.dtype_name = dtype
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.seed = seed
        self._loaded: LoadedModel | None = None

    def load(self, on_step=lambda *args: None) -> LoadedModel:
        if self._loaded is None:
            init_distributed()
            device = local_device(self.device_name)
            dtype = resolve_dtype(self.dtype_name, device)
            if not self.path.exists() and self.path.name in catalog.LLM_MODELS:
                catalog.pull(self.path.name, self.path, on_step)  # default models arrive on first use
            self._loaded = load_model(self.path, device, dtype, allow_split=self.device_name == "auto")
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

    def encode_chat(self, messages: list[dict]) -> list[int]:
        """Token ids of `messages` under the model's chat template, ready for the reply."""
        tokenizer = self.tokenizer
        if tokenizer.chat_template:
            # transformers renders chat templates in a sandboxed Jinja environment.
            encoded = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
            # transformers 5 returns a BatchEncoding here, 4.x a plain list of ids.
            return list(encoded["input_ids"] if hasattr(encoded, "keys") else encoded)
        # A base model without a template: plain text turns are the best we can do.
        text = "\n\n".join(m["content"] for m in messages) + "\nAnswer:"
        return tokenizer(text)["input_ids"]

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def complete(self, prompts: list[str | list[int]], *, max_gen_len: int | None = None,
                 temperature: float | None = None, top_p: float | None = None, seed: int | None = None,
                 echo: bool = False) -> list[Completion]:
        """Continuations of `prompts` (strings or token ids) in one batched generation, with
        Meta's generate() semantics; unset arguments take the configured settings."""
        if not prompts:
            return []
        prompt_ids = [self.tokenizer(p)["input_ids"] if isinstance(p, str) else list(p) for p in prompts]
        settings = GenerationSettings(
            max_gen_len=self.max_new_tokens if max_gen_len is None else max_gen_len,
            temperature=self.temperature if temperature is None else temperature,
            top_p=self.top_p if top_p is None else top_p,
            seed=self.seed if seed is None else seed, echo=echo)
        limit = self.context_length
        for prompt in prompt_ids:
            if len(prompt) + settings.max_gen_len > limit:
                raise ModelError(Errors.E018.format(n_tokens=len(prompt), context=limit,
                                                    max_new=settings.max_gen_len))
        return self._complete_halving(prompt_ids, settings)

    def _complete_halving(self, prompts: list[list[int]], settings: "GenerationSettings") -> list[Completion]:
        # Out of GPU memory: retry in two halves, down to single prompts; a prompt that does
        # not fit even alone fails by itself, and the rest of the batch is still answered.
        try:
            return self._complete(prompts, settings)
        except torch.OutOfMemoryError as err:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            if len(prompts) == 1:
                reason = str(err).strip().splitlines()[0]
                return [Completion("", [], [], error=Errors.E021.format(device=self.device, n=1, reason=reason))]
            half = len(prompts) // 2
            return (self._complete_halving(prompts[:half], settings)
                    + self._complete_halving(prompts[half:], settings))

    def score(self, prompt: list[int], continuations: list[list[int]]) -> list[ContinuationScore]:
        """Total and mean log-probability of each continuation after `prompt` (prompt computed once)."""
        if len(prompt) + max(len(c) for c in continuations) > self.context_length:
            raise ModelError(Errors.E018.format(n_tokens=len(prompt), context=self.context_length,
                                                max_new=max(len(c) for c in continuations)))
        return score_continuations(self.model, prompt, continuations, self.pad_id)

    @property
    def device(self) -> torch.device:
        return self.model.device

    def _complete(self, prompts: list[list[int]], settings: "GenerationSettings") -> list[Completion]:
        generator = None
        if settings.temperature > 0:
            generator = torch.Generator(device=self.device).manual_seed(settings.seed)
        generations = generate(self.model, prompts, max_gen_len=settings.max_gen_len, pad_id=self.pad_id,
                               eos_ids=self.eos_ids, temperature=settings.temperature, top_p=settings.top_p,
                               logprobs=True, echo=settings.echo, generator=generator)
        return [Completion(text=self.tokenizer.decode(g.tokens, skip_special_tokens=True).strip(),
                           tokens=g.tokens, logprobs=g.logprobs) for g in generations]
