"""Examples for fitting the span selector: a pipeline run over labelled questions that keeps,
for every question, every candidate span's features and how right each one would be.

The model scores a wider shortlist than production's (`shortlist`, the best by every feature
but the likelihood), so that a fit sees candidates production's shortlist might drop, and
fitting.ranking replays production's choice among them.
"""

import dataclasses
import gzip
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch
from spacy.language import Language

from ..errors import Errors, NlpipeError
from ..llm.cache import cache_root
from ..llm.engine import Failure
from ..llm.verifier import SENTENCES, read_verification
from ..metrics import scores
from ..squad import SquadParagraph
from .llama_qa import LlamaQA
from .reading import verification_pairs
from .lexical import lexical_features
from .selection import candidate_features, question_context


@dataclass
class Example:
    """One labelled question with its candidates as the selector sees them."""

    id: str
    article: str
    question: str
    qtype: str
    references: list[str]  # [] for an unanswerable question
    texts: list[str]  # the candidates' texts
    rows: list[dict]  # each candidate's features (selection.FEATURES)
    context: dict  # the question-level inputs of answerability (selection.question_context)
    f1: list[float]  # each candidate's F1 against the references (0 for all if unanswerable)
    exact: list[float]
    lexical: list[list[str]] = field(default_factory=list)  # each candidate's lexical features (lexical.py)
    # Each candidate's origin: True for one of the reader's best spans that no spaCy candidate
    # is (production takes those only with weights that weigh them: fitting.ranking).
    reader_only: list[bool] = field(default_factory=list)

    @property
    def answerable(self) -> bool:
        return bool(self.references)


def qa_component(nlp: Language, config: str = "the config") -> LlamaQA:
    """The pipeline's question-answering component, whose span selector a fit is for."""
    for _, pipe in nlp.pipeline:
        if isinstance(pipe, LlamaQA):
            return pipe
    raise NlpipeError(Errors.E101.format(config=config, what="nlpipe fit has no span selector to fit"))


SHORTLIST = 24  # candidates per question the model scores: twice production's default


def record(nlp: Language, paragraphs: Iterable[SquadParagraph], batch_size: int = 8, shortlist: int = SHORTLIST,
           on_questions: Callable[[int], None] = lambda n: None, read: bool | None = None) -> list[Example]:
    """Examples of every question that has candidates (free-form questions have none: their
    answer is the generated reply, which the selector does not choose). `read`: with the
    trained reader's features (selection.READER_FEATURES); None: if the current weights use them."""
    qa = qa_component(nlp)
    examples, paragraphs = [], list(paragraphs)
    for start, batch, docs, asked in asked_batches(nlp, qa, paragraphs, batch_size):
        readings = [None] * len(asked) if read is False else \
            [r if not isinstance(r, Failure) else None for r in qa.readings(asked, always=bool(read))]
        # With the reader's best spans whenever it reads: the fit decides whether to weigh them.
        candidates = [qa.selector.candidates(a.ranked, a.question, shortlist, r, reader_spans=r is not None)
                      for a, r in zip(asked, readings)]
        recorded = {}
        for row, ranking in qa.rank(asked, candidates):
            if ranking is None or isinstance(ranking, Failure):
                continue
            a = asked[row]
            rows = candidate_features(a.question, candidates[row], a.ranked[:qa.selector.max_sentences], ranking,
                                      reading=readings[row])
            linguistic = {(s.start, s.end) for s in qa.selector.all_candidates(a.ranked, a.question)}
            reader_only = [(s.start, s.end) not in linguistic for s in candidates[row]]
            recorded[(id(a.doc), a.question.text)] = (a, candidates[row], rows, readings[row], reader_only)
        for doc, paragraph in zip(docs, batch):
            for qid, question, references in paragraph.questions:
                found = recorded.get((id(doc), question.strip()))
                if found is not None:
                    examples.append(_example(qid, paragraph.title, references, *found))
            on_questions(sum(len(p.questions) for p in paragraphs[:start + len(batch)]))
    return examples


def asked_batches(nlp: Language, qa: LlamaQA, paragraphs: list[SquadParagraph], batch_size: int
                  ) -> Iterator[tuple[int, list[SquadParagraph], list, list]]:
    """(first index, paragraphs, their Docs, their questions as asked) a batch at a time: each
    paragraph parsed by the pipeline's spaCy stage, its questions asked of it (qa.ask)."""
    upstream = [name for name in nlp.pipe_names if name != qa.name]
    for start in range(0, len(paragraphs), batch_size):
        batch = paragraphs[start:start + batch_size]
        docs = list(nlp.pipe((p.context for p in batch), disable=[n for n in nlp.pipe_names if n not in upstream]))
        for doc, paragraph in zip(docs, batch):
            doc._.questions = [q for _, q, _ in paragraph.questions]
        yield start, batch, docs, qa.ask(docs)


def read_states(nlp: Language, qa: LlamaQA, paragraphs: list[SquadParagraph], layers: tuple[int, ...],
                batch_size: int = 32, on_questions: Callable[[int], None] = lambda n: None
                ) -> tuple[torch.Tensor, list[bool], list[str]]:
    """What the verifier is fitted on (nlpipe train, jobs.train_verifier): the verifier inputs
    of every question (llm.verifier.read_verification), whether each is unanswerable, and its
    article. A question whose row fails (out of memory) is left out."""
    inputs, unanswerable, articles, done = [], [], [], 0
    for _, batch, docs, asked in asked_batches(nlp, qa, paragraphs, batch_size):
        labels = {(id(doc), q.strip()): (not refs, p.title)
                  for doc, p in zip(docs, batch) for _, q, refs in p.questions}
        for row, found in read_verification(qa.llm, verification_pairs(asked, SENTENCES), layers):
            if isinstance(found, Failure):
                continue
            missing, article = labels[(id(asked[row].doc), asked[row].question.text)]
            inputs.append(found.cpu())
            unanswerable.append(missing)
            articles.append(article)
        done += sum(len(p.questions) for p in batch)
        on_questions(done)
    return torch.stack(inputs), unanswerable, articles


def _example(qid: str, article: str, references: list[str], asked, candidates, rows, reading,
             reader_only: list[bool]) -> Example:
    texts = [span.text for span in candidates]
    rated = [scores(text, references) if references else (0.0, 0.0) for text in texts]
    return Example(qid, article, asked.question.text, asked.question.qtype, references, texts, rows,
                   question_context(asked.question, asked.doc, asked.ranked, reading), [f1 for _, f1 in rated],
                   [em for em, _ in rated], [lexical_features(asked.question, span) for span in candidates],
                   reader_only)


def recording_path(described: dict) -> Path:
    """Where the recording that `described` (data, pipeline, reader, code) says is kept: the
    per-user cache. Any change to nlpipe's code is a new key, so a recording is never reused
    by code that would record differently."""
    package = Path(__file__).parents[1]
    code = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(package.rglob("*.py")))).hexdigest()
    key = hashlib.sha256(json.dumps({**described, "code": code}, sort_keys=True).encode()).hexdigest()[:24]
    return cache_root() / "recordings" / f"{key}.json.gz"


def save_examples(path: Path, examples: list[Example]) -> None:
    """Written beside `path`, then moved into place: an interrupted write leaves no half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.writing")
    with gzip.open(staging, "wt", encoding="utf-8") as out:
        json.dump([dataclasses.asdict(e) for e in examples], out)
    os.replace(staging, path)


def load_examples(path: Path) -> list[Example] | None:
    """The examples `save_examples` wrote, or None if there are none (or unreadable ones)."""
    try:
        with gzip.open(path, "rt", encoding="utf-8") as stored:
            return [Example(**row) for row in json.load(stored)]
    except (OSError, ValueError, TypeError, EOFError):
        return None
