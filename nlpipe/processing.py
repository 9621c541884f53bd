"""Run a pipeline over a stream of texts: the spaCy stage first, then the LLM stage.

Splitting the pipeline in two lets a text longer than spaCy's `max_length` be annotated in
pieces and joined into one Doc before the LLM components see it, so a long document is
answered from all of its text, never truncated and never refused.
"""

from collections import deque
from typing import Any, Iterable, Iterator

import numpy
from spacy.language import Language
from spacy.tokens import Doc

from . import worker_processes
from .components.llama_qa import LLMPipe, LlamaQA
from .events import JobEvents
from .llm import catalog

# Texts longer than this are annotated in pieces of at most this size: the parser's working
# memory grows with the text it sees at once (about 1.2 GB for 300,000 characters).
PIECE_CHARS = 100_000
# Where to cut a long text, best first: paragraph, line, sentence, word.
SEPARATORS = ("\n\n", "\n", ". ", " ")


def split_text(text: str, limit: int) -> list[str]:
    """Consecutive pieces of at most `limit` characters, cut at the best boundary available;
    their concatenation is exactly `text`, so character offsets survive."""
    pieces, start = [], 0
    while len(text) - start > limit:
        window = text[start:start + limit]
        cut = next((window.rfind(sep) + len(sep) for sep in SEPARATORS if window.rfind(sep) > limit // 4), limit)
        pieces.append(text[start:start + cut])
        start += cut
    pieces.append(text[start:])
    return pieces


def llm_stage(nlp: Language) -> list[str]:
    """Names of the components from the first LLM component (an LLMPipe) to the end."""
    names = nlp.pipe_names
    first = next((i for i, (_, proc) in enumerate(nlp.pipeline) if isinstance(proc, LLMPipe)), len(names))
    return names[first:]


def qa_components(nlp: Language) -> list[LlamaQA]:
    """The components that answer questions."""
    return [proc for _, proc in nlp.pipeline if isinstance(proc, LlamaQA)]


def load_models(nlp: Language, events: JobEvents = JobEvents()) -> None:
    """Load the LLMs of the pipeline's components now (building the pipeline only references
    them), each inside `events.loading_model`, which gives its progress callback."""
    for name, component in nlp.pipeline:
        if isinstance(component, LLMPipe):
            with events.loading_model(name, str(catalog.locate(component.llm.path))) as on_step:
                component.llm.load(on_step)


def piece_chars(nlp: Language) -> int:
    return min(PIECE_CHARS, nlp.max_length)


def annotate_long(nlp: Language, text: str, disable: list[str]) -> Doc:
    """One Doc for a text over `piece_chars(nlp)`, annotated piece by piece.

    Memory grows with the text only through the finished pieces: one piece is in the pipeline
    at a time (spaCy's default batch of 256 would parse every piece at once, 3.4 GB for 1.2 MB
    of text), and each piece drops its tok2vec tensor, the bulk of a Doc that nothing after
    the spaCy stage reads.
    """
    pieces = []
    for piece in nlp.pipe(split_text(text, piece_chars(nlp)), disable=disable, batch_size=1):
        piece.tensor = numpy.zeros((0,), dtype="float32")
        pieces.append(piece)
    return Doc.from_docs(pieces, ensure_whitespace=False, exclude=["tensor"])


def process(nlp: Language, items: Iterable[tuple[str, list[str], Any]], batch_size: int,
            n_process: int = 1) -> Iterator[tuple[Doc, Any]]:
    """(text, questions, context) in, (Doc, context) out, in input order, streamed.

    The spaCy stage may run in `n_process` worker processes; the LLM stage runs here, where
    the model is loaded.
    """
    late = llm_stage(nlp)
    if n_process > 1:
        worker_processes.install()

    def texts():
        for text, questions, context in items:
            too_long = len(text) > piece_chars(nlp)
            # A long text travels as "" through spaCy's own pipe and is annotated in pieces below.
            yield ("" if too_long else text), (text if too_long else None, questions, context)

    annotated = nlp.pipe(texts(), as_tuples=True, disable=late, batch_size=batch_size, n_process=n_process)
    contexts = deque()  # component.pipe keeps order, so contexts leave in the order they came

    def docs() -> Iterator[Doc]:
        for doc, (long_text, questions, context) in annotated:
            if long_text is not None:
                doc = annotate_long(nlp, long_text, late)
            doc._.questions = questions
            contexts.append(context)
            yield doc

    stream = docs()
    for name in late:
        proc = nlp.get_pipe(name)
        stream = proc.pipe(stream, batch_size=batch_size) if hasattr(proc, "pipe") else map(proc, stream)
    for doc in stream:
        yield doc, contexts.popleft()


def answer_questions(nlp: Language, text: str, questions: list[str]) -> list[dict]:
    """The answer records of `questions` (stripped, none blank) about `text`, in their order, from
    one pass of `nlp`; [] when nothing in the pipeline answers questions."""
    [(doc, _)] = process(nlp, [(text, list(questions), None)], batch_size=1)
    # The config's own questions are answered too: keep the asked ones.
    by_question = {answer["question"]: answer for answer in doc._.answers}
    return [by_question[question] for question in questions] if by_question else []
