"""Examples for fitting the span selector: a pipeline run over labelled questions that keeps,
for every question, every candidate span's features and how right each one would be.

The model scores a wider shortlist than production's (`shortlist`, the best by every feature
but the likelihood), so that a fit sees candidates production's shortlist might drop, and
fitting.ranking replays production's choice among them.
"""

from dataclasses import dataclass, field
from typing import Callable, Iterable

from spacy.language import Language

from ..errors import Errors, NlpipeError
from ..llm.engine import Failure
from ..metrics import scores
from ..squad import SquadParagraph
from .llama_qa import LlamaQA
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
    upstream = [name for name in nlp.pipe_names if name != qa.name]
    examples, paragraphs = [], list(paragraphs)
    for start in range(0, len(paragraphs), batch_size):
        batch = paragraphs[start:start + batch_size]
        docs = list(nlp.pipe((p.context for p in batch), disable=[n for n in nlp.pipe_names if n not in upstream]))
        for doc, paragraph in zip(docs, batch):
            doc._.questions = [q for _, q, _ in paragraph.questions]
        asked = qa.ask(docs)
        readings = [None] * len(asked) if read is False else \
            [r if not isinstance(r, Failure) else None for r in qa.readings(asked, always=bool(read))]
        candidates = [qa.selector.candidates(a.ranked, a.question, shortlist, r) for a, r in zip(asked, readings)]
        recorded = {}
        for row, ranking in qa.rank(asked, candidates):
            if ranking is None or isinstance(ranking, Failure):
                continue
            a = asked[row]
            rows = candidate_features(a.question, candidates[row], a.ranked[:qa.selector.max_sentences], ranking,
                                      reading=readings[row])
            recorded[(id(a.doc), a.question.text)] = (a, candidates[row], rows, readings[row])
        for doc, paragraph in zip(docs, batch):
            for qid, question, references in paragraph.questions:
                found = recorded.get((id(doc), question.strip()))
                if found is not None:
                    examples.append(_example(qid, paragraph.title, references, *found))
            on_questions(sum(len(p.questions) for p in paragraphs[:start + len(batch)]))
    return examples


def _example(qid: str, article: str, references: list[str], asked, candidates, rows, reading) -> Example:
    texts = [span.text for span in candidates]
    rated = [scores(text, references) if references else (0.0, 0.0) for text in texts]
    return Example(qid, article, asked.question.text, asked.question.qtype, references, texts, rows,
                   question_context(asked.question, asked.doc, asked.ranked, reading), [f1 for _, f1 in rated],
                   [em for em, _ in rated], [lexical_features(asked.question, span) for span in candidates])
