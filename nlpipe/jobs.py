"""The library's job API: what every `nlpipe` command does, as functions a Python user calls the same way.

A Job is a config (a file or a built-in name) with its overrides applied and its [nlpipe] settings,
frozen: `job.replace(input=..., output=...)` gives a changed, checked copy. `run_job` is the batch
run (`nlpipe run`, the report's pre-run); `ask`, `evaluate`, `fit_selector` and `train_reader`
are the other commands. Progress and notes go to a JobEvents object, which does nothing unless a
caller (the CLI, with rich) overrides its methods.
"""

import dataclasses
import hashlib
import json
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from spacy import util
from spacy.language import Language
from spacy.vocab import Vocab

from . import config as configs
from . import runner
from .components.fitting import (FITTED_FEATURES, check_writable, cross_validate, fit, provenance, summarise,
                                 write_weights)
from .components.recording import (load_examples, qa_component, read_states, record, recording_path,
                                   save_examples)
from .components.selection import FEATURES, READER_FEATURES
from .errors import ConfigError, Errors, InputError, NlpipeError, NlpipeWarning, Warnings, first_line
from .evaluation import EvalResult, evaluate_squad
from .events import JobEvents
from .files import read_small_file
from .io.docbin import docs_from_records, read_docs
from .io.writers import JsonlWriter
from .llm.reader import held_out_readers
from .llm.verifier import SENTENCES, held_out_verifiers, verifier_layers
from .processing import answer_questions, load_models, qa_components
from .report import HtmlReport, check_report_path, write_report
from .report.stats import RunStats
from .runner import Engine, LocalEngine, RunSummary, check_arguments
from .squad import read_squad, unanswerable_questions
from .training.examples import files_digest
from .training.features import model_identity
from .training.job import TrainResult, train_reader
from .training.verification import fit_and_save, states_path

__all__ = ["Engine", "EvalResult", "FitResult", "Job", "JobEvents", "LocalEngine", "RunSummary", "TrainResult", "ask",
           "build", "engine_for", "evaluate", "fit_selector", "load_job", "load_pipeline", "report", "run_job",
           "train_reader", "train_verifier"]


@dataclass(frozen=True)
class Job:
    """A pipeline config ready to run: `source` as given (a file or a built-in name), the
    spaCy-style `overrides` applied to it, the resulting `config` and its [nlpipe] `settings`."""

    source: str
    overrides: dict
    config: util.Config = field(repr=False)
    settings: configs.JobSettings

    def replace(self, **settings) -> "Job":
        """This job with some [nlpipe] settings changed (checked as the config's own are)."""
        changed = configs.checked_settings({**dataclasses.asdict(self.settings), **settings})
        return dataclasses.replace(self, settings=changed)


def load_job(source, overrides: dict | None = None, *, top_k: int | None = None, **settings) -> Job:
    """The Job of config `source` with `overrides` (`{"components.llama_qa.mode": "reader"}`),
    `top_k` set on every llama_qa component, and [nlpipe] `settings` replaced (input=..., ...)."""
    overrides = dict(overrides or {})
    if top_k is not None:
        overrides.update(_top_k_overrides(source, overrides, top_k))
    config = configs.load_config(source, overrides)
    job = Job(str(source), overrides, config, configs.job_settings(config))
    return job.replace(**settings) if settings else job


def _top_k_overrides(source, overrides: dict, top_k: int) -> dict:
    names = configs.qa_component_names(configs.load_config(source, overrides))
    if not names:
        raise ConfigError(Errors.E085.format(key="top_k", value=top_k, message=(
            f"--top-k sets the llama_qa component's top_k, and {source} has no llama_qa component")))
    return {f"components.{name}.top_k": top_k for name in names}


def build(job: Job, events: JobEvents = JobEvents()) -> Language:
    """The job's pipeline, built; its models are referenced, not loaded (see load_pipeline)."""
    with events.step("Building the spaCy pipeline"):
        return configs.build_pipeline(job.config)


def load_pipeline(job: Job, events: JobEvents = JobEvents()) -> Language:
    """The job's pipeline with its models loaded: ready to answer."""
    nlp = build(job, events)
    load_models(nlp, events)
    return nlp


def engine_for(job: Job, nlp: Language, events: JobEvents = JobEvents()) -> Engine:
    """The engine the job's settings choose: this process, or a Ray actor pool."""
    if job.settings.engine == "ray":
        from .distributed.ray_engine import RayEngine  # Ray is optional, and slow to import

        events.note(f"Ray engine: each worker builds the pipeline of {job.source} itself")
        return RayEngine(job.source, job.overrides, job.settings)
    return LocalEngine(nlp, job.settings, events)


def run_job(job: Job, *, engine: Engine | None = None, events: JobEvents = JobEvents(), overwrite: bool = False,
            append: bool = False, retry_failed: bool = False) -> RunSummary:
    """Run the job over its input, writing its output (resumed unless `overwrite`; see
    runner.run). Every check that needs no model comes first, then the pipeline is built (for
    Ray too: its config and checks, never its weights), then the engine loads the models."""
    check_arguments(job.settings)  # before any model is loaded: a typo costs no wait
    nlp = build(job, events)
    return runner.run(nlp, job.settings, events.record, overwrite=overwrite, append=append,
                      retry_failed=retry_failed, on_ready=events.started,
                      engine=engine or engine_for(job, nlp, events))


def ask(job: Job, text: str, questions: list[str], events: JobEvents = JobEvents()) -> list[dict]:
    """The answer records of `questions` about `text`, the model loaded once for all of them."""
    nlp = load_pipeline(job, events)
    if not qa_components(nlp):
        raise NlpipeError(Errors.E101.format(config=job.source, what="nothing answers questions"))
    return answer_questions(nlp, text, questions)


def evaluate(job: Job, squad_file, *, limit: int | None = None, batch_size: int = 8, output=None, report=None,
             events: JobEvents = JobEvents()) -> EvalResult:
    """SQuAD EM/F1 of the job's pipeline on `squad_file` (its first `limit` questions); each
    question's prediction to the JSONL file `output`, an HTML report to `report`. Progress as
    stage "evaluate", in questions."""
    total = sum(len(p.questions) for p in read_squad(squad_file, limit))
    page = HtmlReport(report, title=f"nlpipe eval squad: {Path(squad_file).name}", source=str(squad_file)) \
        if report else None
    nlp = load_pipeline(job, events)
    events.progress("evaluate", 0, total)
    result = evaluate_squad(nlp, squad_file, limit, batch_size, lambda n: events.progress("evaluate", n, total),
                            on_doc=page.add if page else lambda doc: None)
    if page:
        page.close(result.predictions)
    if output:
        with JsonlWriter(output) as writer:
            for prediction in result.predictions:
                writer.write(prediction)
    return result


def report(source: str, output: str, *, overrides: dict | None = None, input: str | None = None,
           questions: str | None = None, expanded: int = 20, events: JobEvents = JobEvents()) -> RunStats:
    """`nlpipe report`: the HTML report `output` of the answers in `source`, a `.spacy` file or
    annotated JSONL output, or a config to run first (locally) over `input` with `questions`."""
    check_report_path(output)  # before a run: a wrong name costs no wait
    kind = Path(source).suffix.lower()
    if kind not in (".spacy", ".jsonl", ".cfg", ""):
        raise InputError(Errors.E092.format(path=source))
    if kind in (".spacy", ".jsonl"):
        return write_report(read_docs(source), output, source=source, expanded=expanded)
    with tempfile.TemporaryDirectory(prefix="nlpipe-report-") as folder:
        records = str(Path(folder) / "records.jsonl")
        job = load_job(source, overrides)
        job = job.replace(input=input or job.settings.input, questions=questions or job.settings.questions,
                          output=records, annotations=True, engine="local")
        run_job(job, events=events)
        return write_report(docs_from_records(records, Vocab()), output, source=source, expanded=expanded)


@dataclass
class FitResult:
    rows: list[dict]  # held-out scores per fold, then all folds (components.fitting.summarise)
    fitted: object  # components.fitting.Fitted: what the weights file holds
    read: bool  # whether the trained reader's features were fitted


def fit_selector(squad_files: list, output, job: Job, *, model: str | None = None, l2: float = 0.01,
                 folds: int = 5, read: bool | None = None, make_unanswerable: bool = True,
                 limit: int | None = None, every: int = 1, events: JobEvents = JobEvents()) -> FitResult:
    """`nlpipe fit`: record every question's candidates with the job's pipeline (its model, or
    `model`), cross-validate by article, fit on everything and write the weights file `output`.
    `read`: fit the trained reader's features too (None: when the reader fits the model)."""
    check_writable(Path(output))
    if model:
        names = configs.qa_component_names(job.config)
        job = load_job(job.source, {**job.overrides, **{f"components.{name}.model.path": model for name in names}})
    paragraphs = [p for path in squad_files for p in read_squad(path, limit)][::every]
    made = make_unanswerable and all(refs for p in paragraphs for _, _, refs in p.questions)
    if made:
        paragraphs += unanswerable_questions(paragraphs)
        events.note("The data has no unanswerable questions: made one per answerable question "
                    "(the paragraph without the answer's sentences, or another paragraph of the article).")
    with warnings.catch_warnings():  # W001 would say to run what is running: nlpipe fit --model
        warnings.simplefilter("ignore", NlpipeWarning)
        nlp = load_pipeline(job, events)
    qa = qa_component(nlp, job.source)
    read = _reader_fits(qa, read, events)
    heads = held_out_readers(qa.reader.folder) if read else []
    verifiers = held_out_verifiers(qa.reader.folder) if read else []
    if read and not heads and _trained_on(qa.reader.folder, squad_files):
        events.note(Warnings.W002.format(reader=qa.reader.path))
    kept = recording_path({"data": files_digest([Path(f) for f in squad_files]), "limit": limit, "every": every,
                           "made_unanswerable": made, "config": job.config.to_str(),
                           "model": _model_digest(qa.llm.path),
                           "reader": _folder_digest(qa.reader.folder) if read else None})
    examples = load_examples(kept)
    if examples is not None:
        events.note(f"Reusing the recording of these questions with this pipeline ({kept}).")
    else:
        total = sum(len(p.questions) for p in paragraphs)
        events.progress("record", 0, total)
        examples = record_held_out(nlp, qa, paragraphs, heads, verifiers,
                                   lambda n: events.progress("record", n, total), read)
        save_examples(kept, examples)
    if not any(e.answerable and max(e.f1) > 0 for e in examples):
        raise NlpipeError(Errors.E102)
    names = [name for name in FITTED_FEATURES if read or name not in READER_FEATURES]
    with events.step("Cross-validating"):
        rows = summarise(cross_validate(examples, names, l2, qa.selector.max_candidates, folds))
    with events.step("Fitting on all the data"):
        fitted = fit(examples, names, l2, qa.selector.max_candidates)
    write_weights(Path(output), fitted, list(FEATURES),
                  provenance(list(squad_files), examples, rows, l2, str(qa.llm.path), made,
                             _reader_provenance(qa, read, heads, verifiers), every))
    return FitResult(rows, fitted, read)


def record_held_out(nlp, qa, paragraphs: list, heads: list, verifiers: list, on_questions, read: bool) -> list:
    """`record`, each article read by the head of `heads` that never saw it (the reader's
    cross-validation heads: llm.reader.held_out_readers), and with the verifier of `verifiers`
    that never saw it (llm.verifier.held_out_verifiers). The reader trained on everything has
    learnt its own training questions (on the pool's unanswerable ones its mean P(no answer) is
    0.54 against 0.38 from heads that never saw them; 0.26 against 0.30 on answerable ones),
    and weights fitted on that trust it more than it earns on new text (5 article folds tested
    with such heads: F1 answering every question 60.5 against 61.1, SQuAD 2.0 45.0 against
    45.9). Articles no head (no verifier) held out are read by the reader (its verifier) itself;
    without fold verifiers, each head reads with the verifier its folder holds, if any."""
    main, own_verifier = qa.reader.path, str(qa.reader.folder)

    def never_saw(title: str, folds: list, otherwise):
        return next((str(folder) for folder, held in folds if title in held), otherwise)
    groups: dict[tuple, list] = {}
    for p in paragraphs:
        verifier = never_saw(p.title, verifiers, own_verifier) if verifiers else None
        groups.setdefault((never_saw(p.title, heads, main), verifier), []).append(p)
    examples, done = [], 0
    try:
        for (folder, verifier), group in groups.items():
            qa.reader.use_path(folder, verifier)
            examples += record(nlp, group, on_questions=lambda n, done=done: on_questions(done + n), read=read)
            done += sum(len(p.questions) for p in group)
    finally:
        qa.reader.use_path(main)
    return examples


def _model_digest(path: Path) -> dict:
    """The model's path and, for a folder, its config and file sizes (training.features.model_identity)."""
    return {"path": str(path), **(model_identity(path) if Path(path).is_dir() else {})}


def _folder_digest(folder: Path) -> dict[str, str]:
    """sha256 of every file of a reader folder, its cross-validation heads included."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def _trained_on(reader: Path, squad_files: list) -> bool:
    """Whether the reader was trained on any of these files (its provenance's data digests)."""
    try:
        trained = set(json.loads(read_small_file(Path(reader) / "reader.json"))["provenance"]["data"].values())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
    return bool(trained & set(files_digest([Path(f) for f in squad_files]).values()))


def _reader_provenance(qa, read: bool, heads: list, verifiers: list) -> str | None:
    if not read:
        return None
    held_out = [f"each of its {len(folds)} cross-validation {what} read the articles it never saw"
                for folds, what in ((heads, "heads"), (verifiers, "verifiers")) if folds]
    return f"{qa.reader.path} ({'; '.join(held_out)})" if held_out else qa.reader.path


def _reader_fits(qa, read: bool | None, events: JobEvents) -> bool:
    """Whether fit reads with the config's reader: if asked (its error if it cannot), else when
    it loads for the model."""
    if read is False:
        return False
    try:
        qa.reader.head(qa.llm)
    except ConfigError as err:
        if read:
            raise
        events.note(f"Fitting without the reader's features: {first_line(err)}")
        return False
    return True


@dataclass
class VerifierResult:
    folds: list[dict]  # held-out AUC per fold, with its articles
    pooled_auc: float | None  # over every held-out question
    questions: int


def train_verifier(files: list[Path], folder: Path, *, model: str = "smollm2-135m", device: str = "auto",
                   dtype: str = "auto", limit: int | None = None, folds: int = 5,
                   progress=lambda stage, done, total: None) -> VerifierResult:
    """`nlpipe train`'s last stage: the verifier (llm.verifier) of the reader in `folder`, and one
    per article fold (training.verification.fit_and_save), fitted on the questions of `files` as
    the `qa` pipeline reads them (its spaCy parse and evidence ranking). The model's states are
    cached per user."""
    check_reader_folder(folder)
    names = configs.qa_component_names(configs.load_config("qa"))
    job = load_job("qa", {f"components.{name}.model.{key}": value for name in names
                          for key, value in (("path", model), ("device", device), ("dtype", dtype))})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NlpipeWarning)
        nlp = load_pipeline(job)
    qa = qa_component(nlp, job.source)
    loaded = qa.llm.load()
    layers = verifier_layers(loaded.model.config.num_hidden_layers)
    data = files_digest([Path(f) for f in files])
    cached = states_path({"data": data, "limit": limit, "model": _model_digest(qa.llm.path), "layers": layers,
                          "dtype": str(loaded.model.dtype), "config": _states_config(job.config, names)})
    if cached.is_file():
        inputs, unanswerable, articles = torch.load(cached, weights_only=True)
    else:
        paragraphs = [p for path in files for p in read_squad(path, limit)]
        total = sum(len(p.questions) for p in paragraphs)
        progress("verifier", 0, total)
        inputs, unanswerable, articles = read_states(nlp, qa, paragraphs, layers,
                                                     on_questions=lambda n: progress("verifier", n, total))
        cached.parent.mkdir(parents=True, exist_ok=True)
        staging = cached.with_name(f".{cached.name}.writing")
        torch.save((inputs, unanswerable, articles), staging)
        os.replace(staging, cached)
    provenance = {"data": data, "limit": limit, "model": str(model), "layers": list(layers), "sentences": SENTENCES,
                  "questions": len(unanswerable), "unanswerable": sum(unanswerable),
                  "command": reproduce_verifier(files, model, limit, folds)}
    rows, pooled = fit_and_save(inputs, unanswerable, articles, Path(folder), layers,
                                loaded.model.config.hidden_size, provenance, folds)
    return VerifierResult(rows, pooled, len(unanswerable))


def _states_config(config, names: list[str]) -> str:
    """The pipeline's config as far as the verifier's states depend on it: without the span
    selectors' sections (their weights, thresholds), which a refit changes and the states never
    read — a new weights file does not cost the states' 23 minutes again."""
    kept = config.copy()
    for name in names:
        kept["components"][name].pop("selector", None)
    return kept.to_str()


def check_reader_folder(folder: Path) -> None:
    """ConfigError E104 unless `folder` holds a trained reader (what a verifier is added to)."""
    if not (Path(folder) / "reader.json").is_file():
        raise ConfigError(Errors.E104.format(path=folder))


def reproduce_verifier(files: list[Path], model: str, limit: int | None, folds: int) -> str:
    """The `nlpipe train --verifier-only` line that fits the same verifiers."""
    return " ".join(["nlpipe train", *(Path(f).name for f in files), "--model", model, "--verifier-only",
                     *(["--limit", str(limit)] if limit is not None else []), "--folds", str(folds)])
