"""What a job reports while it runs (nlpipe.jobs): a class whose methods do nothing, for a caller
to override the ones it shows. Light on purpose: the CLI imports it before anything heavy."""

from contextlib import AbstractContextManager, nullcontext
from typing import Callable

# (step, done, total) of a model's fetch and load (llm.catalog's steps), for a progress display.
OnStep = Callable[[str, int, int], None]


class JobEvents:
    """What a job reports while it runs. Each method does nothing here; override the ones you show."""

    def step(self, description: str) -> AbstractContextManager:
        """Around a step with no measure of progress ("Building the spaCy pipeline")."""
        return nullcontext()

    def loading_model(self, component: str, location: str) -> AbstractContextManager[OnStep]:
        """Around loading a component's model from `location` (a fetch first, when it is not present)."""
        return nullcontext(lambda step, done, total: None)

    def progress(self, stage: str, done: int, total: int | None) -> None:
        """`done` of `total` units of `stage` (questions of an evaluation or a fit's recording)."""

    def note(self, message: str) -> None:
        """A line worth telling the user (a choice the job made for them)."""

    def started(self) -> None:
        """A run's checks have passed and its models are loaded: the first document is next."""

    def record(self, record: dict, summary) -> None:
        """A run wrote `record`; `summary` (a runner.RunSummary) counts the run so far."""
