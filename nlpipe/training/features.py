"""The LM's hidden states of every training example, computed once into the per-user cache.

The LM stays frozen while the head trains, so its features are computed once per (data, model,
layers) and every epoch and every cross-validation fold reads them back. Extraction writes into
a preallocated file and records after each batch how far it got (written atomically), so an
interrupted run resumes where it stopped; a finished cache is marked complete.
"""

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..llm.batching import token_groups
from ..llm.cache import cache_root
from ..llm.reader import QUESTION_TEMPLATE, context_ids, hidden_features, question_ids, row_states
from .examples import Example

FEATURES_VERSION = 1


@dataclass
class Encoded:
    """One example in the LM's tokens: the question prompt, the context, each context token's
    character offsets."""

    question: list[int]
    context: list[int]
    offsets: list[tuple[int, int]]


@dataclass
class FeatureCache:
    folder: Path
    encoded: list[Encoded]
    starts: np.ndarray  # first row of each example's tokens in `matrix`
    matrix: np.ndarray  # [tokens of all examples, layers x hidden], bf16 bits as int16
    with_question: bool = False  # each example's rows: its question's and context's tokens, or the context's

    def question_length(self, index: int) -> int:
        return len(self.encoded[index].question) if self.with_question else 0

    def length(self, index: int) -> int:
        return self.question_length(index) + len(self.encoded[index].context)

    def features(self, index: int) -> torch.Tensor:
        start = int(self.starts[index])
        return torch.from_numpy(np.ascontiguousarray(self.matrix[start:start + self.length(index)])).view(torch.bfloat16)


def encode(tokenizer, examples: list[Example], max_context_tokens: int) -> list[Encoded]:
    encoded = []
    for example in examples:
        ids, offsets = context_ids(tokenizer, example.context)
        encoded.append(Encoded(question_ids(tokenizer, example.question), ids[:max_context_tokens],
                               offsets[:max_context_tokens]))
    return encoded


def cache_key(model_identity: dict, data_digest: dict, layers: tuple[int, ...], dtype: str,
              with_question: bool = False) -> str:
    described = {"version": FEATURES_VERSION, "model": model_identity, "data": data_digest, "layers": list(layers),
                 "dtype": dtype, "template": QUESTION_TEMPLATE}
    if with_question:
        described["rows"] = "question and context"
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:24]


def model_identity(folder: Path) -> dict:
    """The model's config and the sizes of its files: a different checkpoint, a different key."""
    files = sorted(p for p in Path(folder).iterdir() if p.is_file())
    config = (Path(folder) / "config.json").read_text(encoding="utf-8") if (Path(folder) / "config.json").is_file() else ""
    return {"config": hashlib.sha256(config.encode()).hexdigest(), "files": {p.name: p.stat().st_size for p in files}}


def extract(llm, examples: list[Example], layers: tuple[int, ...], key: str, *, max_batch_tokens: int = 4096,
            with_question: bool = False, on_progress: Callable[[int, int], None] = lambda done, total: None,
            stop_after: int | None = None) -> FeatureCache:
    """Every example's context features (`with_question`: the states at layer `layers[0]` of its
    question's and context's tokens, what tuned layers train from), from the cache when
    complete, else computed (resuming a partial run). `stop_after` batches: end early, as an
    interrupt would (for tests)."""
    folder = cache_root() / "features" / key
    folder.mkdir(parents=True, exist_ok=True)
    model, tokenizer = llm.model, llm.tokenizer
    encoded = encode(tokenizer, examples, max(llm.context_length - 64, 1))  # 64: room for the question
    lengths = np.array([len(e.context) + (len(e.question) if with_question else 0) for e in encoded], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    width = model.config.hidden_size * len(layers)
    shape = (max(1, int(lengths.sum())), width)
    matrix_path, progress_path = folder / "features.bin", folder / "progress.json"
    progress = _read_json(progress_path)
    if progress.get("shape") != list(shape):  # new, or from other examples: start over
        progress = {"shape": list(shape), "batches_done": 0, "complete": False}
        with open(matrix_path, "wb") as out:
            out.truncate(shape[0] * shape[1] * 2)
    matrix = np.memmap(matrix_path, dtype=np.int16, mode="r+", shape=shape)
    if not progress["complete"]:
        costs = [len(e.question) + len(e.context) for e in encoded]
        order = sorted(range(len(encoded)), key=costs.__getitem__)
        batches = token_groups(order, costs, max_batch_tokens)
        total, done = sum(costs), sum(costs[i] for batch in batches[:progress["batches_done"]] for i in batch)
        on_progress(done, total)
        for number in range(progress["batches_done"], len(batches)):
            if stop_after is not None and number >= stop_after:
                matrix.flush()
                return FeatureCache(folder, encoded, starts, matrix, with_question)
            batch = batches[number]
            pairs = [(encoded[i].question, encoded[i].context) for i in batch]
            rows = (row_states(model, pairs, layers[0], llm.pad_id) if with_question
                    else hidden_features(model, pairs, layers, llm.pad_id))
            for i, features in zip(batch, rows):
                matrix[starts[i]:starts[i] + lengths[i]] = features.to(torch.bfloat16).cpu().view(torch.int16).numpy()
            matrix.flush()  # the rows on disk before the progress that counts them
            progress["batches_done"] = number + 1
            _write_json(progress_path, progress)
            done += sum(costs[i] for i in batch)
            on_progress(done, total)
        progress["complete"] = True
        _write_json(progress_path, progress)
    return FeatureCache(folder, encoded, starts, matrix, with_question)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)
