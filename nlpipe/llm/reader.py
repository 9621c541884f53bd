"""The trained reader: a question-aware pass of the causal LM, then a small head that scores
every span of the context (and "no answer") from the model's hidden states.

The prompt puts the question FIRST, so every context token's hidden state has already seen the
question (a causal model reads left to right): the LM does the question-context matching, the
head only has to read it off. The head is a bidirectional transformer layer over a few of the
LM's layers (a causal state of an answer's first token cannot know where the answer ends), with
a learned "no answer" position in front. A span (i, j) scores start[i] + end[j]; "no answer"
scores start[0] + end[0]; one softmax over all of them gives calibrated probabilities
(`span_distribution`, the one ranking rule for training, cross-validation and answering).

A reader may also carry trainable copies of a few of the LM's layers (`tuned_layers`): the LM
then runs only up to the layer they start from (`layers[0]`) over question and context, the
copies take over from there, and the head reads their output. Fine-tuning the layers that match
question to context is what a frozen LM's states cannot give a head (held out: reader F1 30 → 50
on the pool). They are stored as int8 differences from the LM's own layers, with a checksum of
those, so a reader stays small and refuses a model it was not trained from.

Knows token ids and tensors only: no spaCy, no SQuAD.
"""

import copy
import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from ..files import read_small_file

READER_FORMAT = "nlpipe.Reader.v1"
TUNED_FORMAT = "nlpipe.Reader.v2"  # with tuned layers (tuned.pt)
FOLDS_DIR = "folds"  # inside a reader folder: the cross-validation heads `nlpipe train` kept
QUESTION_TEMPLATE = "Question: {question}\nContext:"


@dataclass(frozen=True)
class ReaderConfig:
    """What a head is built from. `layers` are the LM's hidden-state indices it reads (0 is the
    embeddings, num_hidden_layers the last layer); nothing here is tied to one model size. With
    `tuned_layers` = k, `layers` is one index b: the reader's copies of the LM's layers b+1..b+k
    (tuned) read the LM's states at b, and the head reads theirs."""

    hidden_size: int
    layers: tuple[int, ...]
    width: int = 256
    heads: int = 4
    max_answer_tokens: int = 30
    dropout: float = 0.1
    tuned_layers: int = 0


def default_layers(num_hidden_layers: int) -> tuple[int, ...]:
    """A third, two thirds and all of the way up: lower layers keep the words, upper ones
    what the model makes of them."""
    return tuple(sorted({max(1, round(num_hidden_layers * k / 3)) for k in (1, 2, 3)}))


def tuned_base(num_hidden_layers: int, tuned_layers: int) -> int:
    """Where tuned layers start: two thirds of the way up (the layers below keep what the model
    knows of words; the ones above are where it relates the question to the text), lower if the
    model has too few layers above that."""
    return max(0, min(round(num_hidden_layers * 2 / 3), num_hidden_layers - tuned_layers))


def question_ids(tokenizer, question: str) -> list[int]:
    """The prompt before the context; the tokenizer's BOS where it adds one."""
    return tokenizer(QUESTION_TEMPLATE.format(question=" ".join(question.split())))["input_ids"]


def context_ids(tokenizer, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids of a context (a leading space, as after "Context:") and each token's character
    offsets in `text`."""
    encoded = tokenizer(" " + text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = [(max(0, start - 1), max(0, end - 1)) for start, end in encoded["offset_mapping"]]
    return encoded["input_ids"], offsets


@torch.inference_mode()
def hidden_features(model, rows: list[tuple[list[int], list[int]]], layers: tuple[int, ...],
                    pad_id: int) -> list[torch.Tensor]:
    """For each (question ids, context ids) row, the chosen layers' hidden states of its context
    tokens, concatenated: [n_context, len(layers) x hidden]. One batched pass (right padding:
    a causal model's real tokens never see the padding after them), which ends at the highest
    layer read when that is below the top (the top one is normalised: only the full pass gives it)."""
    ids, mask, lengths = _padded(rows, pad_id, model.device)
    if max(layers) < model.config.num_hidden_layers:
        stacked = torch.cat(_layer_states(model, ids, mask, layers), dim=-1)
    else:
        # logits_to_keep=1: the vocabulary-sized head runs for one position, not every token.
        out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True, use_cache=False, logits_to_keep=1)
        stacked = torch.cat([out.hidden_states[layer] for layer in layers], dim=-1)
    return [stacked[r, len(q):lengths[r]] for r, (q, _) in enumerate(rows)]


class _Reached(Exception):
    pass


def _layer_states(model, ids: torch.Tensor, mask: torch.Tensor, layers: tuple[int, ...]) -> list[torch.Tensor]:
    """The states after each of `layers` (0: the embeddings), all below the top; the LM stops
    after the highest (a hook on that layer ends the pass): the layers above cost nothing."""
    captured, hooks, highest = {}, [], max(layers)

    def keep(layer):
        def hook(module, args, output):
            captured[layer] = output[0] if isinstance(output, tuple) else output
            if layer == highest:
                raise _Reached
        return hook

    for layer in set(layers) - {0}:
        hooks.append(model.model.layers[layer - 1].register_forward_hook(keep(layer)))
    try:
        if 0 in layers:
            captured[0] = model.model.embed_tokens(ids)
        if highest > 0:
            model.model(input_ids=ids, attention_mask=mask, use_cache=False)
            raise RuntimeError(f"layer {highest} was never reached")
    except _Reached:
        pass
    finally:
        for hook in hooks:
            hook.remove()
    return [captured[layer] for layer in layers]


@torch.inference_mode()
def row_states(model, rows: list[tuple[list[int], list[int]]], layer: int, pad_id: int) -> list[torch.Tensor]:
    """For each (question ids, context ids) row, the hidden states of all its tokens after LM
    layer `layer` ([n_question + n_context, hidden]): what tuned layers start from. The LM stops
    there: the layers above are the reader's to replace."""
    ids, mask, lengths = _padded(rows, pad_id, model.device)
    [states] = _layer_states(model, ids, mask, (layer,))
    return [states[r, :lengths[r]] for r in range(len(rows))]


def _padded(rows, pad_id: int, device):
    lengths = [len(q) + len(c) for q, c in rows]
    ids = torch.full((len(rows), max(lengths)), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, (q, c) in enumerate(rows):
        ids[r, :lengths[r]] = torch.tensor(q + c)
        mask[r, :lengths[r]] = 1
    return ids.to(device), mask.to(device), lengths


def reader_inputs(model, rows: list[tuple[list[int], list[int]]], config: ReaderConfig,
                  pad_id: int) -> list[torch.Tensor]:
    """What a reader of `config` reads of each row: the context tokens' states at its layers, or
    with tuned layers all tokens' states at the layer those start from."""
    if config.tuned_layers:
        return row_states(model, rows, config.layers[0], pad_id)
    return hidden_features(model, rows, config.layers, pad_id)


class TunedLayers(nn.Module):
    """Trainable copies of LM layers first+1..first+count (decoder-layer modules first..first+
    count-1), run causally over question and context from the LM's states after layer `first`."""

    def __init__(self, model, first: int, count: int):
        super().__init__()
        self.first = first
        self.layers = nn.ModuleList(copy.deepcopy(model.model.layers[first:first + count])).float()
        self.rotary = copy.deepcopy(model.model.rotary_emb).float()
        config = copy.copy(self.layers[0].self_attn.config)
        # sdpa without a mask is causal: right padding never reaches a real token, whatever
        # attention the LM itself was loaded with.
        config._attn_implementation = "sdpa"
        for layer in self.layers:
            layer.self_attn.config = config

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(states.shape[1], device=states.device)[None].expand(states.shape[0], -1)
        rotation = self.rotary(states, positions)
        for layer in self.layers:
            states = layer(states, attention_mask=None, position_embeddings=rotation, position_ids=positions)
            states = states[0] if isinstance(states, tuple) else states
        return states


class ReaderHead(nn.Module):
    def __init__(self, config: ReaderConfig):
        super().__init__()
        self.config = config
        features = config.hidden_size * len(config.layers)
        self.norm = nn.LayerNorm(features)
        self.project = nn.Linear(features, config.width)
        self.no_answer = nn.Parameter(torch.zeros(config.width))
        self.position = nn.Embedding(1024, config.width)  # relative order, cheap; wraps beyond
        self.encoder = nn.TransformerEncoderLayer(config.width, config.heads, 4 * config.width, config.dropout,
                                                  activation="gelu", batch_first=True, norm_first=True)
        self.span = nn.Linear(config.width, 2)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """features [batch, tokens, layers x hidden], mask [batch, tokens] (True = real) →
        start and end logits [batch, 1 + tokens]: position 0 is "no answer"."""
        x = self.project(self.norm(features.float()))
        positions = torch.arange(x.shape[1], device=x.device) % self.position.num_embeddings
        x = x + self.position(positions)
        x = torch.cat([self.no_answer.expand(x.shape[0], 1, -1), x], dim=1)
        real = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1).bool()
        x = self.encoder(x, src_key_padding_mask=~real)
        start, end = self.span(x).unbind(-1)
        return start.masked_fill(~real, -1e4), end.masked_fill(~real, -1e4)


class SpanReader(nn.Module):
    """The whole trained reader: its tuned layers (if any), then the head."""

    def __init__(self, config: ReaderConfig, tuned: TunedLayers | None = None):
        super().__init__()
        self.config = config
        self.tuned = tuned
        self.head = ReaderHead(config)

    def forward(self, states: torch.Tensor, question_lengths: list[int], lengths: list[int]
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """states [batch, tokens, features], right padded: each row's first question_lengths
        tokens are its question's (0 without tuned layers: rows of context only), then its
        context up to lengths → start and end logits over the contexts (`ReaderHead`)."""
        if self.tuned is not None:
            states = self.tuned(states)
        contexts = [n - q for q, n in zip(question_lengths, lengths)]
        context = states.new_zeros(states.shape[0], max(contexts), states.shape[-1])
        mask = torch.zeros(context.shape[:2], dtype=torch.bool, device=states.device)
        for r, (q, n) in enumerate(zip(question_lengths, contexts)):
            context[r, :n] = states[r, q:q + n]
            mask[r, :n] = True
        return self.head(context, mask)


def span_scores(start: torch.Tensor, end: torch.Tensor, max_answer_tokens: int) -> torch.Tensor:
    """[batch, 1 + tokens, 1 + tokens] of start[i] + end[j] for every allowed span (1 ≤ i ≤ j <
    i + max_answer_tokens) and "no answer" at [0, 0]; -inf elsewhere."""
    n = start.shape[-1]
    i = torch.arange(n, device=start.device)
    allowed = (i[None, :] >= i[:, None]) & (i[None, :] < i[:, None] + max_answer_tokens)
    allowed[0, :] = False
    allowed[:, 0] = False
    allowed[0, 0] = True
    scores = start[:, :, None] + end[:, None, :]
    return scores.masked_fill(~allowed, float("-inf"))


def span_distribution(start: torch.Tensor, end: torch.Tensor, max_answer_tokens: int) -> torch.Tensor:
    """Log-probabilities over every span and "no answer" ([batch, 1 + tokens, 1 + tokens]):
    the one rule that ranks spans, for the training loss and for answering alike."""
    scores = span_scores(start, end, max_answer_tokens)
    return scores - torch.logsumexp(scores.flatten(1), dim=-1)[:, None, None]


@dataclass
class SpanPrediction:
    """Context tokens first..last (0-based, inclusive) and the probability of that span."""

    first: int
    last: int
    probability: float


def best_spans(log_probs: torch.Tensor, k: int) -> tuple[list[SpanPrediction], float]:
    """The k most probable spans of one row of `span_distribution` and P(no answer)."""
    flat = log_probs.flatten()
    n = log_probs.shape[-1]
    no_answer = math.exp(flat[0].item())
    flat = flat.clone()
    flat[0] = float("-inf")
    top = torch.topk(flat, min(k, int(torch.isfinite(flat).sum())))
    spans = [SpanPrediction(int(index) // n - 1, int(index) % n - 1, math.exp(value))
             for value, index in zip(top.values.tolist(), top.indices.tolist())]
    return spans, no_answer


# Reader features of a span the reader never saw (outside every window it read): as unlikely
# as a span can be.
LOG_FLOOR = math.log(1e-12)
# The reader's most probable spans of a question that join the selector's candidates (its
# favourite is often no entity or noun chunk: "about 2,850 kilometres", "1887 to 1889"). Five
# rather than three or one: held out by article, F1 answering every question 71.4 against 70.9
# and 69.8 (README, "Measured").
TOP_SPANS = 5
UNREAD = {"reader_exact": LOG_FLOOR, "reader_start": LOG_FLOOR, "reader_end": LOG_FLOOR, "reader_overlap": 0.0,
          "reader_inside": 0.0}
NOT_TOP = {"reader_first": 0.0, "reader_top": 0.0}  # a span none of the reader's TOP_SPANS


def span_features(log_probs: torch.Tensor, token_spans: list[tuple[int, int]]) -> list[dict[str, float]]:
    """What one row of `span_distribution` says of each context-token span (first, last): the
    log-probability of exactly it, of an answer starting at its first token and of one ending
    at its last, and the share of the answer's probability on spans that overlap it and on
    spans inside it. Several views of one distribution: a candidate one token off the reader's
    favourite keeps most of its overlap while its exact probability drops to nothing."""
    probs = log_probs.float().exp()
    answered = max(1.0 - probs[0, 0].item(), 1e-9)
    starts, ends = probs[1:, 1:].sum(1), probs[1:, 1:].sum(0)
    ends_before = torch.cat([torch.zeros(1), ends.cumsum(0)])  # [k]: P(the answer ends before token k)
    starts_after = starts.flip(0).cumsum(0).flip(0)  # [k]: P(it starts at token k or later)
    n = starts.shape[0]
    rows = []
    for first, last in token_spans:
        after = starts_after[last + 1].item() if last + 1 < n else 0.0
        rows.append({
            "reader_exact": max(log_probs[first + 1, last + 1].item(), LOG_FLOOR),
            "reader_start": math.log(max(starts[first].item(), 1e-12)),
            "reader_end": math.log(max(ends[last].item(), 1e-12)),
            "reader_overlap": max(0.0, answered - ends_before[first].item() - after) / answered,
            "reader_inside": probs[first + 1:last + 2, first + 1:last + 2].sum().item() / answered})
    return rows


def save_reader(reader: SpanReader, folder: Path, provenance: dict, model=None) -> None:
    """reader.json (format, config, provenance), reader.pt (the head's weights) and, with tuned
    layers, tuned.pt (their int8 differences from `model`'s layers, the LM they were tuned from)."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().to(torch.bfloat16 if tensor.is_floating_point() else tensor.dtype).contiguous()
             for name, tensor in reader.head.state_dict().items()}
    torch.save(state, folder / "reader.pt")
    meta = {"format": READER_FORMAT, "config": asdict(reader.config), "provenance": provenance}
    if reader.tuned is not None:
        base = _base_state(model, reader.tuned)
        torch.save(_differences(reader.tuned.layers.state_dict(), base), folder / "tuned.pt")
        meta = {**meta, "format": TUNED_FORMAT, "base_sha256": _checksum(base)}
    (folder / "reader.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def load_reader(folder: Path, model=None) -> tuple[SpanReader, dict]:
    """The reader of a folder, in eval mode, and its reader.json. Given `model` (the LM; needed
    for a reader with tuned layers, stored as differences from its layers and loaded in its
    dtype), a reader trained for another model is refused (ModelMismatch)."""
    meta = json.loads(read_small_file(folder / "reader.json"))
    if meta.get("format") not in (READER_FORMAT, TUNED_FORMAT):
        raise ValueError(f"format is {meta.get('format')!r}, not {READER_FORMAT} or {TUNED_FORMAT}")
    config = ReaderConfig(**{**meta["config"], "layers": tuple(meta["config"]["layers"])})
    if model is not None:
        _check_fits(config, model.config)
    tuned = None
    if config.tuned_layers:
        if model is None:
            raise ValueError("a reader with tuned layers is loaded with the model it was tuned from")
        tuned = TunedLayers(model, config.layers[0], config.tuned_layers)
        base = _base_state(model, tuned)
        if _checksum(base) != meta.get("base_sha256"):
            raise ModelMismatch(f"its layers {config.layers[0] + 1}-{config.layers[0] + config.tuned_layers} "
                                "were tuned from another model's")
        differences = torch.load(folder / "tuned.pt", map_location="cpu", weights_only=True)
        tuned.layers.load_state_dict(_apply(base, differences))
        tuned.layers.to(model.dtype)  # in the LM's dtype, as the states they continue from
    reader = SpanReader(config, tuned)
    state = torch.load(folder / "reader.pt", map_location="cpu", weights_only=True)
    reader.head.load_state_dict({name: tensor.float() for name, tensor in state.items()})
    return reader.eval(), meta


class ModelMismatch(ValueError):
    """A reader given a model other than the one it was trained for."""


def _check_fits(config: ReaderConfig, model_config) -> None:
    if (config.hidden_size != model_config.hidden_size
            or max(config.layers) + config.tuned_layers > model_config.num_hidden_layers):
        raise ModelMismatch(f"it was trained for a model with hidden size {config.hidden_size} reading layers "
                            f"{list(config.layers)}{f' and tuning {config.tuned_layers} more' if config.tuned_layers else ''}, "
                            f"but this one has hidden size {model_config.hidden_size} and "
                            f"{model_config.num_hidden_layers} layers")


def _base_state(model, tuned: TunedLayers) -> dict[str, torch.Tensor]:
    """The LM's own weights of the layers `tuned` replaces, rounded to bf16 on the CPU: the same
    reference whatever dtype or device the LM was loaded with."""
    layers = model.model.layers[tuned.first:tuned.first + len(tuned.layers)]
    return {name: tensor.detach().to("cpu", torch.bfloat16) for name, tensor in
            nn.ModuleList(layers).state_dict().items()}


def _checksum(state: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode())
        digest.update(state[name].contiguous().view(torch.int16).numpy().tobytes())
    return digest.hexdigest()


def _differences(tuned: dict[str, torch.Tensor], base: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """tuned - base per tensor: a matrix as int8 with a scale per row (a quarter of its float32
    size; the error is under 0.4 % of the row's largest change), a vector in bf16."""
    stored = {}
    for name, tensor in tuned.items():
        change = tensor.detach().float().cpu() - base[name].float()
        if change.dim() < 2:
            stored[name] = change.to(torch.bfloat16)
            continue
        scale = change.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127
        stored[name + ".int8"] = torch.round(change / scale).to(torch.int8)
        stored[name + ".scale"] = scale
    return stored


def _apply(base: dict[str, torch.Tensor], stored: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state = {}
    for name, reference in base.items():
        change = stored[name].float() if name in stored else stored[name + ".int8"].float() * stored[name + ".scale"]
        state[name] = reference.float() + change
    return state


def held_out_readers(folder: Path) -> list[tuple[Path, set[str]]]:
    """The cross-validation heads kept with a reader (folds/fold-K, written by `nlpipe train`),
    each with the articles it never saw: what `nlpipe fit` reads those articles with, so that
    the selector learns how much to trust the reader on text the reader was not trained on."""
    return held_out_folders(folder, "fold-*/reader.json")


def held_out_folders(folder: Path, pattern: str) -> list[tuple[Path, set[str]]]:
    """The folders of the files `pattern` matches in `folder`/folds, each with the articles its
    file's provenance says it was fitted without ("held"); those without any are skipped."""
    found = []
    for path in sorted(Path(folder, FOLDS_DIR).glob(pattern)):
        held = json.loads(read_small_file(path)).get("provenance", {}).get("held")
        if held:
            found.append((path.parent, set(held)))
    return found
