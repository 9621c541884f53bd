"""The verifier: do the sentences that match a question best answer it?

SQuAD's unanswerable questions are written to look answered: their words are in a sentence of
the text, with one swapped ("Which year…" of a date the text never gives), negated or turned
into its opposite. The reader reads the question before the document, so no question token
ever sees the text. The verifier reads them the other way round — "Context: <the best-matching
sentences>\\nQuestion: <question>\\nAnswer:" — so that every question token attends to the
sentences, and the frozen model's states at the end of that prompt say how well the two agree.
A logistic regression on those states gives P(no answer) (the answerability model's input
`verifier_no_answer`). Nothing here assumes one model size: the layers are fractions of the
model's depth, the weights as wide as its states.
"""

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from ..files import read_small_file
from .engine import Failure
from .reader import ModelMismatch, ReaderConfig, held_out_folders

VERIFIER_FORMAT = "nlpipe.Verifier.v1"
VERIFIER_FILE = "verifier.json"  # in a reader folder, beside reader.json
# Its cross-validation folds: folds/verifier-K/verifier.json, each fitted without the articles
# its provenance calls "held" (what `nlpipe fit` reads those articles with).
FOLD_PREFIX = "verifier-"
SENTENCES = 2  # the best match alone holds the answer of 83 % of the pool's answerable questions, two 94 %
MAX_CONTEXT_TOKENS = 256  # of those sentences: a verifier row stays short whatever a sentence's length
ANSWER_CUE = "\nAnswer:"
# On standardised states. Held-out AUC, 5 article folds of the pool: 0.740 (0.003: 0.732, 0.03: 0.742, 0.1: 0.736).
L2 = 0.01


def verifier_layers(num_hidden_layers: int) -> tuple[int, ...]:
    """Halfway and two thirds of the way up: where a probe of SmolLM2-135M's last-token states
    told the pool's unanswerable questions apart best (held out by article, with the best
    sentence alone: AUC 0.69 at layer 15, 0.71 at 20, 0.73 the two together; 0.62 at 25, 0.58
    at the top layer, which is busy predicting the next word)."""
    return tuple(sorted({max(1, round(num_hidden_layers * k)) for k in (1 / 2, 2 / 3)}))


def verification_row(tokenizer, sentences: list[str], question: str) -> tuple[list[int], list[int]]:
    """(the context prompt's ids, the question's ids then the answer cue's): what the model reads,
    split where the states the verifier reads begin."""
    context = tokenizer(" " + " ".join(" ".join(s.split()) for s in sentences),
                        add_special_tokens=False)["input_ids"][:MAX_CONTEXT_TOKENS]
    prefix = (tokenizer("Context:")["input_ids"] + context
              + tokenizer("\nQuestion:", add_special_tokens=False)["input_ids"])
    asked = tokenizer(" " + " ".join(question.split()), add_special_tokens=False)["input_ids"]
    return prefix, asked + cue_ids(tokenizer)


def cue_ids(tokenizer) -> list[int]:
    return tokenizer(ANSWER_CUE, add_special_tokens=False)["input_ids"]


def verification_inputs(states: torch.Tensor, cue_length: int) -> torch.Tensor:
    """What the verifier weighs of one row ([n_question + cue_length tokens, layers x hidden], as
    llm.reader.hidden_features gives them): the last token's states, where the model has read it
    all, and the mean of the question tokens' (a probe held out by article, 5 folds, told the
    pool's unanswerable questions apart at AUC 0.753 with both, 0.749 with the mean alone, 0.710
    with the last token's alone)."""
    question = states[:max(1, len(states) - cue_length)]
    return torch.cat([states[-1], question.mean(0)]).float()


def read_verification(llm, pairs: list[tuple[list[str], str]],
                      layers: tuple[int, ...]) -> Iterator[tuple[int, "torch.Tensor | Failure"]]:
    """(row, its verifier inputs or Failure) for each (sentences, question) pair: the model reads
    the rows in batches (Llama.read_stream) up to the highest of `layers`."""
    rows = [verification_row(llm.tokenizer, sentences, question) for sentences, question in pairs]
    cue_length = len(cue_ids(llm.tokenizer))
    config = ReaderConfig(hidden_size=llm.model.config.hidden_size, layers=tuple(layers))
    for row, states in llm.read_stream(rows, config):
        yield row, states if isinstance(states, Failure) else verification_inputs(states, cue_length)


@dataclass
class Verifier:
    layers: tuple[int, ...]
    hidden_size: int
    sentences: int  # how many best-matching sentences it reads
    mean: torch.Tensor  # of the inputs it was fitted on: it weighs them standardised
    scale: torch.Tensor
    weights: torch.Tensor
    bias: float

    def no_answer(self, inputs: torch.Tensor) -> torch.Tensor:
        """P(no answer) for each row of `inputs` ([n, layers x hidden])."""
        standardised = (inputs.float().cpu() - self.mean) / self.scale
        return torch.sigmoid(standardised @ self.weights + self.bias)


def fit_verifier(inputs: torch.Tensor, unanswerable: torch.Tensor, layers: tuple[int, ...], hidden_size: int,
                 sentences: int = SENTENCES, l2: float = L2) -> Verifier:
    """Logistic regression of `unanswerable` (1/0) on standardised `inputs`, each class weighing
    half (the pool has half as many unanswerable questions), fitted to convergence (L-BFGS)."""
    inputs, labels = inputs.float(), unanswerable.float()
    mean, scale = inputs.mean(0), inputs.std(0).nan_to_num(0.0).clamp_min(1e-5)
    standardised = (inputs - mean) / scale
    positives, negatives = max(1.0, float(labels.sum())), max(1.0, float(len(labels) - labels.sum()))
    balance = torch.where(labels > 0, 0.5 / positives, 0.5 / negatives) * len(labels)
    weights = torch.zeros(inputs.shape[1], requires_grad=True)
    bias = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([weights, bias], max_iter=200, line_search_fn="strong_wolfe")

    def loss():
        optimizer.zero_grad()
        losses = torch.nn.functional.binary_cross_entropy_with_logits(standardised @ weights + bias, labels,
                                                                      reduction="none")
        value = (losses * balance).mean() + l2 * (weights ** 2).sum()
        value.backward()
        return value
    optimizer.step(loss)
    return Verifier(tuple(layers), hidden_size, sentences, mean, scale, weights.detach(), float(bias.detach()))


def save_verifier(verifier: Verifier, folder: Path, provenance: dict) -> None:
    """verifier.json in `folder` (made if missing), written beside it and then moved into place:
    an interrupted write leaves the old file or none, never half of one."""
    def numbers(tensor):
        return [round(float(v), 6) for v in tensor]
    document = {"format": VERIFIER_FORMAT, "layers": list(verifier.layers), "hidden_size": verifier.hidden_size,
                "sentences": verifier.sentences, "mean": numbers(verifier.mean), "scale": numbers(verifier.scale),
                "weights": numbers(verifier.weights), "bias": round(verifier.bias, 6), "provenance": provenance}
    Path(folder).mkdir(parents=True, exist_ok=True)
    staging = Path(folder, f".{VERIFIER_FILE}.writing")
    staging.write_text(json.dumps(document) + "\n", encoding="utf-8")
    os.replace(staging, Path(folder, VERIFIER_FILE))


def held_out_verifiers(folder: Path) -> list[tuple[Path, set[str]]]:
    """The cross-validation verifiers kept with a reader (folds/verifier-K, written by `nlpipe
    train`), each with the articles it never saw."""
    return held_out_folders(folder, f"{FOLD_PREFIX}*/{VERIFIER_FILE}")


def load_verifier(folder: Path, hidden_size: int, num_hidden_layers: int) -> Verifier | None:
    """The verifier kept in a reader folder, None if it has none. One fitted on another model's
    states is refused (ModelMismatch): its weights would mean nothing there."""
    path = Path(folder, VERIFIER_FILE)
    if not path.is_file():
        return None
    document = json.loads(read_small_file(path))
    if document.get("format") != VERIFIER_FORMAT:
        raise ValueError(f"{path}: format is {document.get('format')!r}, not {VERIFIER_FORMAT}")
    layers = tuple(document["layers"])
    width = 2 * document["hidden_size"] * len(layers)  # the last token's states and the question's mean
    if document["hidden_size"] != hidden_size or max(layers) > num_hidden_layers:
        raise ModelMismatch(f"its verifier was fitted on states {document['hidden_size']} wide at layers "
                            f"{list(layers)}, but this model's are {hidden_size} wide, with {num_hidden_layers} layers")
    vectors = {key: torch.tensor(document[key], dtype=torch.float32) for key in ("mean", "scale", "weights")}
    if any(v.shape != (width,) for v in vectors.values()) or not math.isfinite(document["bias"]):
        raise ValueError(f"{path}: its weights are not {width} numbers each")
    return Verifier(layers, hidden_size, int(document["sentences"]), vectors["mean"],
                    vectors["scale"].clamp_min(1e-5), vectors["weights"], float(document["bias"]))
