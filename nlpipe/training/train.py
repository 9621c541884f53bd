"""Train the reader (its head, and its tuned layers if it has any) on cached LM states:
mini-batches, checkpoints, article-level cross-validation, and the no-answer threshold chosen on
held-out predictions.

The loss is the negative log of the probability `span_distribution` gives to the right answer:
the sum over every place a reference answer occurs (SQuAD does not say which occurrence is
meant), or "no answer" for an unanswerable question. Training and answering rank spans by the
same function, so what cross-validation measures is what the pipeline does.
"""

import contextlib
import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..llm.batching import token_groups
from ..llm.devices import cpu_has_fast_bf16
from ..llm.reader import ReaderConfig, SpanReader, TunedLayers, best_spans, span_distribution
from ..metrics import scores as squad_scores
from .examples import Example
from .features import FeatureCache
from .settings import TrainSettings


@dataclass
class Prediction:
    """A held-out example's best span text and P(no answer)."""

    qid: str
    text: str
    no_answer: float
    references: tuple[str, ...]
    span_probability: float = 0.0
    start_char: int | None = None  # the span's offsets in its context
    end_char: int | None = None

    def scored(self, threshold: float | None) -> tuple[float, float]:
        """(EM, F1) in SQuAD's rules; "no answer" when P(no answer) ≥ threshold (None: always answer)."""
        text = "" if threshold is not None and self.no_answer >= threshold else self.text
        return squad_scores(text, list(self.references))


def token_targets(example: Example, offsets: list[tuple[int, int]], max_answer_tokens: int) -> list[tuple[int, int]]:
    """The right cells of `span_distribution` ((first + 1, last + 1) per answer occurrence inside
    the context tokens and at most `max_answer_tokens` long; (0, 0) for "no answer"). Empty when
    no occurrence is a span the head can give: the example cannot be learned (its loss would be
    infinite)."""
    if not example.answerable:
        return [(0, 0)]
    cells = []
    for start_char, end_char in example.spans:
        first = next((t for t, (s, e) in enumerate(offsets) if e > start_char and not offsets[t][0] >= end_char), None)
        last = next((t for t in range(len(offsets) - 1, -1, -1) if offsets[t][0] < end_char), None)
        if first is not None and last is not None and first <= last < first + max_answer_tokens:
            cells.append((first + 1, last + 1))
    return cells


def batches_of(indices: list[int], lengths: list[int], batch_tokens: int, rng: random.Random) -> list[list[int]]:
    """Indices grouped by similar length (little padding), each batch within `batch_tokens`
    (rows x longest), in a shuffled order."""
    order = sorted(indices, key=lambda i: (lengths[i], rng.random()))
    batches = token_groups(order, lengths, batch_tokens)
    rng.shuffle(batches)
    return batches


def collate(cache: FeatureCache, batch: list[int], device) -> tuple[torch.Tensor, list[int], list[int]]:
    """The batch's rows of states, right padded, with each row's question and total lengths."""
    rows = [cache.features(i) for i in batch]
    states = torch.zeros(len(rows), max(r.shape[0] for r in rows), rows[0].shape[1], dtype=torch.bfloat16)
    for r, row in enumerate(rows):
        states[r, :row.shape[0]] = row
    return states.to(device), [cache.question_length(i) for i in batch], [r.shape[0] for r in rows]


def batch_loss(reader: SpanReader, cache: FeatureCache, batch: list[int], targets: list[list[tuple[int, int]]],
               device):
    start, end = reader(*collate(cache, batch, device))
    log_probs = span_distribution(start, end, reader.config.max_answer_tokens)
    losses = []
    for r, i in enumerate(batch):
        cells = torch.tensor(targets[i], device=device)
        losses.append(-torch.logsumexp(log_probs[r, cells[:, 0], cells[:, 1]], dim=0))
    return torch.stack(losses).mean()


def _bf16(device: torch.device):
    """bf16 matrix units (a CUDA GPU, or a CPU with AMX/AVX512-BF16) run the matmuls about
    1.5-2x faster; the weights stay float32."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda" or cpu_has_fast_bf16())


@dataclass
class Checkpoint:
    """Where an interrupted training run resumes: after `step` mini-batches of `epoch`."""

    path: Path | None
    every: int = 200

    def load(self, reader, optimizer, schedule) -> tuple[int, int]:
        if self.path is None or not self.path.is_file():
            return 0, 0
        state = torch.load(self.path, map_location="cpu", weights_only=False)
        reader.load_state_dict(state["reader"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        torch.set_rng_state(state["torch_rng"])
        return state["epoch"], state["step"]

    def save(self, reader, optimizer, schedule, epoch: int, step: int) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        torch.save({"reader": reader.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                    "torch_rng": torch.get_rng_state(), "epoch": epoch, "step": step}, tmp)
        os.replace(tmp, self.path)


def train_head(cache: FeatureCache, examples: list[Example], indices: list[int], hidden_size: int,
               layers: tuple[int, ...], settings: TrainSettings, checkpoint: Checkpoint | None = None,
               on_step: Callable[[int, int], None] = lambda done, total: None,
               stop_after: int | None = None, model=None) -> SpanReader | None:
    """A reader trained on `indices`: its head, and copies of `model`'s layers above `layers[0]`
    when settings.tuned_layers (on the model's device). The same data, settings and seed give
    the same weights, also across an interrupt and resume (the batch order is drawn per epoch
    from the seed). `stop_after` mini-batches: stop there as an interrupt would, returning None."""
    torch.manual_seed(settings.seed)
    config = ReaderConfig(hidden_size, tuple(layers), settings.width, settings.heads, settings.max_answer_tokens,
                          settings.dropout, settings.tuned_layers)
    tuned = TunedLayers(model, layers[0], settings.tuned_layers) if settings.tuned_layers else None
    device = model.device if model is not None else torch.device("cpu")
    reader = SpanReader(config, tuned).to(device)
    targets = {i: token_targets(examples[i], cache.encoded[i].offsets, settings.max_answer_tokens) for i in indices}
    usable = [i for i in indices if targets[i]]
    lengths = [cache.length(i) for i in range(len(cache.encoded))]
    per_epoch = [batches_of(usable, lengths, settings.batch_tokens, random.Random(settings.seed * 1000 + epoch))
                 for epoch in range(settings.epochs)]
    total = sum(map(len, per_epoch))
    groups = [{"params": list(reader.head.parameters()), "lr": settings.learning_rate}]
    if tuned is not None:  # pretrained weights move slower than the new head
        groups.append({"params": list(tuned.parameters()), "lr": settings.tuned_learning_rate})
    optimizer = torch.optim.AdamW(groups, weight_decay=settings.weight_decay)
    warmup = max(1, total // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(
        (step + 1) / warmup, 0.5 * (1 + math.cos(math.pi * min(1.0, step / max(1, total))))))
    checkpoint = checkpoint or Checkpoint(None)
    first_epoch, first_step = checkpoint.load(reader, optimizer, schedule)
    done = sum(map(len, per_epoch[:first_epoch])) + first_step
    on_step(done, total)
    reader.train()
    for epoch in range(first_epoch, settings.epochs):
        for step in range(first_step if epoch == first_epoch else 0, len(per_epoch[epoch])):
            if stop_after is not None and done >= stop_after:
                checkpoint.save(reader, optimizer, schedule, epoch, step)
                return None
            with _bf16(device):
                loss = batch_loss(reader, cache, per_epoch[epoch][step], targets, device)
            if not torch.isfinite(loss):  # never train on (or ship) NaN weights
                raise FloatingPointError(f"the training loss became {loss.item()} at mini-batch {done}")
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(reader.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            done += 1
            on_step(done, total)
            if done % checkpoint.every == 0:
                checkpoint.save(reader, optimizer, schedule, epoch, step + 1)
    return reader.eval()


@torch.inference_mode()
def predict(reader: SpanReader, cache: FeatureCache, examples: list[Example], indices: list[int],
            batch_tokens: int = 8192) -> list[Prediction]:
    """One Prediction per index, in the order of `indices`."""
    device = next(reader.parameters()).device
    lengths = [cache.length(i) for i in range(len(cache.encoded))]
    predictions = {}
    for batch in batches_of(indices, lengths, batch_tokens, random.Random(0)):
        # Tuned layers run in bf16 where the pipeline's LM does; a head alone in float32, as there.
        with _bf16(device) if reader.tuned is not None else contextlib.nullcontext():
            start, end = reader(*collate(cache, batch, device))
        log_probs = span_distribution(start.float(), end.float(), reader.config.max_answer_tokens).cpu()
        for r, i in enumerate(batch):
            n = len(cache.encoded[i].context) + 1
            spans, no_answer = best_spans(log_probs[r, :n, :n], 1)
            example, offsets = examples[i], cache.encoded[i].offsets
            start, end = (offsets[spans[0].first][0], offsets[spans[0].last][1]) if spans else (0, 0)
            while start < end and example.context[start].isspace():
                start += 1
            predictions[i] = Prediction(example.qid, example.context[start:end].strip(), no_answer,
                                        example.references, spans[0].probability if spans else 0.0,
                                        start if spans else None, end if spans else None)
    return [predictions[i] for i in indices]


@dataclass
class FoldResult:
    held: list[str]  # the articles (or paragraphs) it tests on
    predictions: list[Prediction] = field(default_factory=list)
    threshold: float | None = None  # chosen on the other folds' held-out predictions


def summary(predictions: list[Prediction], threshold: float | None) -> dict:
    """Answerable EM/F1 always answering; HasAns/NoAns/overall with the threshold, and overall
    with answerable and unanswerable questions weighted equally ("balanced")."""
    answerable = [p for p in predictions if p.references]
    unanswerable = [p for p in predictions if not p.references]

    def mean(values):
        return 100 * sum(values) / len(values) if values else 0.0

    always = [p.scored(None) for p in answerable]
    has = [p.scored(threshold) for p in answerable]
    no = [p.scored(threshold) for p in unanswerable]
    return {"questions": len(predictions), "answerable": len(answerable), "unanswerable": len(unanswerable),
            "always_em": mean([em for em, _ in always]), "always_f1": mean([f1 for _, f1 in always]),
            "has_f1": mean([f1 for _, f1 in has]), "no_accuracy": mean([f1 for _, f1 in no]),
            "overall_f1": mean([f1 for _, f1 in has + no]),
            "balanced_f1": (mean([f1 for _, f1 in has]) + mean([f1 for _, f1 in no])) / 2 if no and has else None,
            "threshold": threshold}


def choose_threshold(predictions: list[Prediction]) -> float | None:
    """The P(no answer) cut that maximises F1 with answerable and unanswerable questions weighted
    equally: the share of unanswerable questions users send is unknown, so neither kind may win
    by being common in the training data. None (always answer) without both kinds."""
    answerable = [p for p in predictions if p.references]
    unanswerable = np.array([p.no_answer for p in predictions if not p.references])
    if not answerable or not len(unanswerable):
        return None
    f1 = np.array([p.scored(None)[1] for p in answerable])
    no_answer = np.array([p.no_answer for p in answerable])
    cuts = np.unique(np.round(np.concatenate([no_answer, unanswerable, [1.01]]), 3))
    has_f1 = ((no_answer[None, :] < cuts[:, None]) * f1[None, :]).mean(1)
    no_accuracy = (unanswerable[None, :] >= cuts[:, None]).mean(1)
    return float(cuts[int(np.argmax(has_f1 + no_accuracy))])
