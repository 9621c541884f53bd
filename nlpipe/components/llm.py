"""The registered function that builds the LLM from a config block."""

from spacy.util import registry

from ..llm.engine import Llama


@registry.misc("nlpipe.Llama.v1")
def make_llama(path: str = "models/smollm2-135m", device: str = "auto", dtype: str = "auto",
               max_new_tokens: int = 32, temperature: float = 0.0, top_p: float = 1.0,
               seed: int = 0) -> Llama:
    """`path`: a Hugging Face folder or a .gguf file; a missing folder named after a known
    model (models/smollm2-135m) is fetched on first use."""
    return Llama(path, device=device, dtype=dtype, max_new_tokens=max_new_tokens,
                 temperature=temperature, top_p=top_p, seed=seed)
