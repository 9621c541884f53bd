"""`FakeLlama`: a Llama whose replies and likelihoods are scripted, for tests and demos without weights.

Registered as `nlpipe.FakeLlama.v1` (components/llm.py), it goes in a config's model slot as
the real model does, as simonw/llm's MockModel is a real plugin:

    [components.llama_qa.model]
    @misc = "nlpipe.FakeLlama.v1"
    reply = "I do not know"          # what every generation replies...
    replies = {"Where": "Paris"}     # ...unless its prompt holds one of these (the first that does)
    scores = {"Paris": -0.5}         # a candidate's log-probability per token (else `score`)
    raises = {"Rome": "boom"}        # a pass with a prompt holding "Rome" raises RuntimeError("boom")
    out_of_memory = ["Lisbon"]       # a pass with a prompt holding "Lisbon" runs out of device memory

Only what a real model computes is scripted: tokens (one per character, so a prompt decodes
exactly), replies and likelihoods. The rest is Llama's own: the context-window checks, the
token-bounded passes and the out-of-memory retries in halves give the same Failures a real
model gives. Each pass is logged in `passes`. A fake has no hidden states, so the trained
reader (mode "reader", or selector weights that use its features, which the shipped weights
do for the shipped model) needs a real model: keep `path` off the shipped model's name.
"""

from collections.abc import Iterable

import torch

from .engine import Completion, Llama
from .loading import LoadedModel
from .scoring import ContinuationScore

END_OF_TURN = 0x110000  # one past the last Unicode code point: no character's token


class CharTokenizer:
    """One token per character, its code point; END_OF_TURN closes a reply or a candidate."""

    chat_template = None  # prompts are the messages as plain turns (Llama.chat_text)
    eos_token_id = END_OF_TURN
    pad_token_id = None  # Llama.pad_id pads with END_OF_TURN

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict:
        return {"input_ids": [ord(c) for c in text]}  # no special tokens, asked for or not

    def decode(self, ids: list[int]) -> str:
        return "".join(chr(i) for i in ids if i != END_OF_TURN)


class FakeLlama(Llama):
    """`reply` unless the prompt holds a key of `replies`, whole (max_new_tokens only sizes the
    context-window checks), with `reply_logprob` for each of its tokens. A candidate span gets
    `scores[its text]`, else `score`, for each of its tokens. `raises` and `out_of_memory` fail
    every pass holding a prompt with one of their keys. `path` only names the model."""

    def __init__(self, path="fake-llama", reply: str = "", replies: dict[str, str] | None = None,
                 reply_logprob: float = -1.0, score: float = -1.0, scores: dict[str, float] | None = None,
                 raises: dict[str, str] | None = None, out_of_memory: Iterable[str] = (), context_length: int = 2048,
                 max_new_tokens: int = 32, max_batch_tokens: int = 8192):
        super().__init__(path, device="cpu", max_new_tokens=max_new_tokens, max_batch_tokens=max_batch_tokens)
        self.reply, self.replies, self.reply_logprob = reply, dict(replies or {}), reply_logprob
        self.score, self.scores = score, dict(scores or {})
        self.raises, self.out_of_memory = dict(raises or {}), list(out_of_memory)
        self.window = context_length
        self.passes: list[tuple[str, list[str]]] = []  # ("generate" or "rank", its prompts) of every pass run

    def load(self, on_step=lambda *args: None) -> LoadedModel:
        return LoadedModel(None, CharTokenizer(), self.path)

    @property
    def context_length(self) -> int:
        return self.window

    @property
    def eos_ids(self) -> list[int]:
        return [END_OF_TURN]

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def _complete(self, requests, settings, rows: list[int]) -> list[Completion]:
        replies = [self._reply(prompt) for prompt in self._pass("generate", requests, rows)]
        return [Completion(reply.strip(), self.encode_text(reply), [self.reply_logprob] * len(reply))
                for reply in replies]

    def _rank(self, requests, rows: list[int]) -> list[list[ContinuationScore]]:
        self._pass("rank", requests, rows)
        return [[self._score(tokens) for tokens in requests[r].continuations] for r in rows]

    def _reply(self, prompt: str) -> str:
        return next((reply for key, reply in self.replies.items() if key in prompt), self.reply)

    def _score(self, tokens: list[int]) -> ContinuationScore:
        per_token = self.scores.get(self.tokenizer.decode(tokens), self.score)
        return ContinuationScore(per_token * len(tokens), per_token, [per_token] * len(tokens))

    def _pass(self, kind: str, requests, rows: list[int]) -> list[str]:
        """The prompts of one pass (`rows` of `requests`), decoded, after its scripted failure if
        it has one; logged in the order they were asked (the engine runs them by length)."""
        prompts = {r: self.tokenizer.decode(requests[r].tokens) for r in rows}
        for key, message in self.raises.items():
            if any(key in prompt for prompt in prompts.values()):
                raise RuntimeError(message)
        for key in self.out_of_memory:
            if any(key in prompt for prompt in prompts.values()):
                raise torch.OutOfMemoryError(f"out of memory (scripted for prompts holding {key!r})")
        self.passes.append((kind, [prompts[r] for r in sorted(rows)]))
        return [prompts[r] for r in rows]
