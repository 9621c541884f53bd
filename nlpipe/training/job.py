"""`nlpipe train` as one library call: SQuAD files in, a reader folder out.

features (cached) → article-level k-fold cross-validation (a head per fold, tested on the
articles it never saw; each fold's threshold chosen on the other folds' held-out predictions)
→ the head trained on everything, with the threshold chosen on all held-out predictions →
reader.json + reader.pt with their provenance. Every stage resumes: features from their cache,
heads from their checkpoints, finished folds from their saved predictions.
"""

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from ..errors import ConfigError, Errors, InputError
from ..llm.cache import cache_root
from ..llm.engine import Llama
from ..llm.reader import FOLDS_DIR, SpanReader, default_layers, save_reader, tuned_base
from . import features as feature_cache
from .examples import deal_folds, files_digest, fold_keys, read_examples
from .train import (Checkpoint, FoldResult, Prediction, TrainSettings, choose_threshold, predict, summary,
                    train_head)

ProgressCallback = Callable[[str, int, int], None]  # (stage, done, total)
PREDICTIONS = "predictions.json"  # a cross-validation fold's held-out predictions, in its folder


@dataclass
class TrainResult:
    output: Path
    folds: list[dict]  # one summary per held-out fold, with its articles
    pooled: dict  # every held-out prediction, each fold with its own threshold
    threshold: float | None  # the shipped reader's
    seconds: dict


def train_reader(files: list[Path], output: Path, *, model: str = "smollm2-135m", device: str = "auto",
                 dtype: str = "auto", settings: TrainSettings = TrainSettings(), folds: int = 5,
                 limit: int | None = None, progress: ProgressCallback = lambda stage, done, total: None) -> TrainResult:
    """Train a reader for `model` on the SQuAD-format `files` (the first `limit` questions) and
    write it to `output`; `progress(stage, done, total)` follows every long step."""
    check_output(output)
    examples = read_examples([Path(f) for f in files])[:limit]
    if not any(e.answerable for e in examples):
        raise InputError(Errors.E088.format(files=", ".join(map(str, files)),
                                            reason="no answerable question whose answer is a span of its paragraph"))
    timings, began = {}, time.perf_counter()
    llm = Llama(model, device=device, dtype=dtype)  # `auto`: bf16 on a CPU with native bf16 (resolve_dtype)
    loaded = llm.load()
    config = loaded.model.config
    tuned = settings.tuned_layers
    if tuned > config.num_hidden_layers:
        raise ConfigError(Errors.E103.format(tuned=tuned, model=model, n_layers=config.num_hidden_layers))
    layers = (tuned_base(config.num_hidden_layers, tuned),) if tuned else default_layers(config.num_hidden_layers)
    dtype_name = str(loaded.model.dtype).removeprefix("torch.")
    data = files_digest([Path(f) for f in files])
    described_data = data if limit is None else {**data, "limit": limit}
    key = feature_cache.cache_key(feature_cache.model_identity(loaded.path), described_data, layers, dtype_name,
                                  with_question=bool(tuned))
    cache = feature_cache.extract(llm, examples, layers, key, max_batch_tokens=llm.max_batch_tokens // 2,
                                  with_question=bool(tuned),
                                  on_progress=lambda done, total: progress("features", done, total))
    timings["features"] = round(time.perf_counter() - began, 1)
    run = cache_root() / "training" / hashlib.sha256(json.dumps(
        [key, asdict(settings), folds], sort_keys=True).encode()).hexdigest()[:24]

    def fit(name: str, indices: list[int]):
        return train_head(cache, examples, indices, config.hidden_size, layers, settings,
                          Checkpoint(run / f"{name.replace(' ', '-')}.pt"),
                          on_step=lambda done, total: progress(name, done, total), model=loaded.model)

    began = time.perf_counter()
    unit, keys = fold_keys(examples)
    results = []
    for number, held in enumerate(deal_folds(keys, folds), start=1):
        test = [i for i, key in enumerate(keys) if key in set(held)]
        train = sorted(set(range(len(examples))) - set(test))
        results.append(held_out(run / f"fold-{number}", held, lambda: fit(f"fold {number}", train),
                                lambda head: predict(head, cache, examples, test), loaded.model))
    for result in results:  # each fold's threshold from the others' held-out predictions only
        result.threshold = choose_threshold([p for other in results if other is not result for p in other.predictions])
    timings["cross_validation"] = round(time.perf_counter() - began, 1)
    began = time.perf_counter()
    everything = [p for result in results for p in result.predictions]
    threshold = choose_threshold(everything)
    head = fit("final", list(range(len(examples))))
    timings["final"] = round(time.perf_counter() - began, 1)
    rows = [{"held": r.held, **summary(r.predictions, r.threshold)} for r in results]
    pooled = pooled_summary(results)
    provenance = {
        "data": data, "examples": {"answerable": sum(e.answerable for e in examples),
                                   "unanswerable": sum(not e.answerable for e in examples)},
        "limit": limit, "model": str(model), "model_config": feature_cache.model_identity(loaded.path)["config"],
        "dtype": dtype_name, "device": str(llm.device), "layers": list(layers), "settings": asdict(settings),
        "threshold": threshold,
        "threshold_rule": "maximises held-out F1 with answerable and unanswerable questions weighted equally",
        "cross_validation": {"split": unit,
                             "folds": rows, "pooled": pooled},
        "seconds": timings,
        "license": "Trained on SQuAD questions (Rajpurkar et al. 2016, 2018; CC BY-SA 4.0).",
        "command": reproduce_command(files, str(model), dtype_name, limit, folds, settings),
    }
    write_reader(head, output, provenance, [run / f"fold-{number}" for number in range(1, len(results) + 1)],
                 loaded.model)
    return TrainResult(output, rows, pooled, threshold, timings)


def reproduce_command(files: list[Path], model: str, dtype: str, limit: int | None, folds: int,
                      settings: TrainSettings) -> str:
    """The `nlpipe train` line that trains the same reader: every option that changes the
    weights, defaults included (a later release may change a default; `auto` depends on the
    machine, so the dtype it chose)."""
    words = ["nlpipe train", *(Path(f).name for f in files), "--model", model, "--dtype", dtype,
             *(["--limit", str(limit)] if limit is not None else []), "--folds", str(folds),
             "--epochs", str(settings.epochs), "--learning-rate", f"{settings.learning_rate:g}",
             "--seed", str(settings.seed)]
    if settings.tuned_layers:
        words += ["--tune-layers", str(settings.tuned_layers),
                  "--tuned-learning-rate", f"{settings.tuned_learning_rate:g}"]
    return " ".join(words)


def check_output(output: Path) -> None:
    """A reader is written into a new or empty folder, or over an earlier reader; never into
    a folder that holds anything else, nor over a file."""
    if output.exists() and (not output.is_dir() or (any(output.iterdir()) and not (output / "reader.json").is_file())):
        raise ConfigError(Errors.E089.format(path=output))


def write_reader(head: SpanReader, output: Path, provenance: dict, fold_heads: list[Path] = (), model=None) -> None:
    """The reader and the cross-validation heads (`folds/fold-K`: what `nlpipe fit` reads each
    article with, a head that never saw it), written next to `output`, then moved into place: an
    interrupted write leaves the old reader (or nothing), never half of one."""
    staging = output.with_name(output.name + ".writing")
    shutil.rmtree(staging, ignore_errors=True)
    save_reader(head, staging, provenance, model)
    for number, folder in enumerate(fold_heads, start=1):  # the head only, not the fold's predictions
        shutil.copytree(folder, staging / FOLDS_DIR / f"fold-{number}",
                        ignore=shutil.ignore_patterns(PREDICTIONS, "*.tmp"))
    output.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(output / FOLDS_DIR, ignore_errors=True)
    if fold_heads:
        os.replace(staging / FOLDS_DIR, output / FOLDS_DIR)
    tuned = (staging / "tuned.pt").is_file()
    for name in ("tuned.pt", "reader.pt", "reader.json"):  # the weights before the file that names them
        if (staging / name).is_file():
            os.replace(staging / name, output / name)
    if not tuned:  # a reader without tuned layers, over one with: the old layers go, after its reader.json
        (output / "tuned.pt").unlink(missing_ok=True)
    staging.rmdir()


def held_out(folder: Path, held: list[str], train_fold: Callable[[], SpanReader],
             predict_fold: Callable[[SpanReader], list[Prediction]], model=None) -> FoldResult:
    """One fold's head (kept in `folder` as a reader that never saw the `held` articles) and its
    held-out predictions: read back when an earlier run finished the fold."""
    path = folder / PREDICTIONS
    if path.is_file() and (folder / "reader.json").is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved["held"] == held:
            return FoldResult(held, [Prediction(**p) for p in saved["predictions"]])
    head = train_fold()
    save_reader(head, folder, {"held": held, "note": "a cross-validation head: trained on the other articles"}, model)
    predictions = predict_fold(head)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"held": held, "predictions": [asdict(p) for p in predictions]}), encoding="utf-8")
    os.replace(tmp, path)
    return FoldResult(held, predictions)


def pooled_summary(results: list[FoldResult]) -> dict:
    """All held-out predictions together, each judged with its own fold's threshold."""
    total = {"answerable": 0, "unanswerable": 0}
    sums = {"always_em": 0.0, "always_f1": 0.0, "has_f1": 0.0, "no_accuracy": 0.0}
    for result in results:
        row = summary(result.predictions, result.threshold)
        total["answerable"] += row["answerable"]
        total["unanswerable"] += row["unanswerable"]
        for name in ("always_em", "always_f1", "has_f1"):
            sums[name] += row[name] * row["answerable"]
        sums["no_accuracy"] += row["no_accuracy"] * row["unanswerable"]
    a, u = max(1, total["answerable"]), max(1, total["unanswerable"])
    pooled = {name: value / a for name, value in sums.items() if name != "no_accuracy"}
    pooled["no_accuracy"] = sums["no_accuracy"] / u
    pooled["overall_f1"] = (sums["has_f1"] + sums["no_accuracy"]) / max(1, total["answerable"] + total["unanswerable"])
    pooled["balanced_f1"] = (pooled["has_f1"] + pooled["no_accuracy"]) / 2
    return {**total, **pooled}
