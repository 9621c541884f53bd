"""The registered function that builds the LLM from a config block."""

from spacy.util import registry

from ..llm.engine import Llama


@registry.misc("nlpipe.Llama.v1")
def make_llama(path: str = "models/smollm2-135m", device: str = "auto", dtype: str = "auto",
               max_new_tokens: int = 32, temperature: float = 0.0, top_p: float = 1.0,
               seed: int = 0, max_batch_tokens: int = 8192) -> Llama:
    """`path`: a Hugging Face folder, a .gguf file or a Meta Llama folder; a missing folder
    named after a known model (models/smollm2-135m) is fetched on first use.
    `max_batch_tokens` caps rows x padded length of one forward pass (memory)."""
    return Llama(path, device=device, dtype=dtype, max_new_tokens=max_new_tokens,
                 temperature=temperature, top_p=top_p, seed=seed, max_batch_tokens=max_batch_tokens)
