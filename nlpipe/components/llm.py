"""The registered functions that build the LLM from a config block: the real model, and a scripted fake."""

from typing import Dict, List, Literal

# Constrained types from pydantic's v1 API: the one confection checks config values with.
from pydantic.v1 import NonNegativeFloat, NonPositiveFloat, PositiveInt, confloat, constr
from spacy.util import registry

from ..llm.engine import Llama
from ..llm.fake import FakeLlama

# What llm.devices.local_device accepts: checked when the config is read, not when the model loads.
Device = constr(regex=r"^(auto|cpu|mps|cuda(:\d+)?)$")


@registry.misc("nlpipe.Llama.v1")
def make_llama(path: str = "models/smollm2-135m", device: Device = "auto",
               dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto",
               max_new_tokens: PositiveInt = 32, temperature: NonNegativeFloat = 0.0,
               top_p: confloat(gt=0, le=1) = 1.0, seed: int = 0, max_batch_tokens: PositiveInt = 8192) -> Llama:
    """`path`: a Hugging Face folder, a .gguf file or a Meta Llama folder; a missing folder
    named after a known model (models/smollm2-135m) is fetched on first use. `device`: auto,
    cpu, cuda, cuda:N or mps. `max_batch_tokens` bounds every forward pass (rows x tokens)."""
    return Llama(path, device=device, dtype=dtype, max_new_tokens=max_new_tokens,
                 temperature=temperature, top_p=top_p, seed=seed, max_batch_tokens=max_batch_tokens)


@registry.misc("nlpipe.FakeLlama.v1")
def make_fake_llama(reply: str = "", replies: Dict[str, str] = {}, reply_logprob: NonPositiveFloat = -1.0,
                    score: NonPositiveFloat = -1.0, scores: Dict[str, NonPositiveFloat] = {},
                    raises: Dict[str, str] = {}, out_of_memory: List[str] = [], path: str = "fake-llama",
                    context_length: PositiveInt = 2048, max_new_tokens: PositiveInt = 32,
                    max_batch_tokens: PositiveInt = 8192) -> FakeLlama:
    """A model whose replies and candidate likelihoods are scripted, with no weights to load: for
    tests and demos (nlpipe/llm/fake.py says what each setting scripts)."""
    return FakeLlama(path, reply=reply, replies=replies, reply_logprob=reply_logprob, score=score, scores=scores,
                     raises=raises, out_of_memory=out_of_memory, context_length=context_length,
                     max_new_tokens=max_new_tokens, max_batch_tokens=max_batch_tokens)
