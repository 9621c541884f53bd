"""The `llama_qa` component: answers questions about each Doc with a LLaMA model, grounded in the Doc.

The Pipe only wires the task (prompts), the model (one batched generation for the questions that
need a reply, one batched ranking of candidate spans) and the strategy (results → answers).
"""

import itertools
import json
import shutil
import warnings
from pathlib import Path
from collections import Counter
from typing import Callable, Iterable, Iterator, List, Literal

# Constrained types from pydantic's v1 API: the one confection checks config values with.
from pydantic.v1 import PositiveInt
from spacy import util
from spacy.language import Language
from spacy.pipeline import Pipe
from spacy.tokens import Doc

from ..errors import ConfigError, Errors, NlpipeWarning, Warnings
from ..limits import MAX_TOP_K
from ..llm import catalog
from ..llm.engine import Failure, Llama, Request
from ..llm.reader import TOP_SPANS
from . import llm as _llm  # noqa: F401  registers nlpipe.Llama.v1
from .answers import Answer, set_answers
from .evidence import EvidenceSelector
from .grounding import answer_core, clean_answer
from .pipeline_meta import name_pipeline
from .prompting import QAPrompt
from .reading import Reader
from .selection import DEFAULT_WEIGHTS_FILE, NO_READER_WEIGHTS_FILE, SHIPPED, SpanSelector, read_weights
from .strategies import Generative, Grounded, Reply
from .task import Asked, QATask, QuestionsError

DEFAULT_CONFIG = {
    "model": {"@misc": "nlpipe.Llama.v1"},
    "evidence": {"@misc": "nlpipe.EvidenceSelector.v1"},
    "prompt": {"@misc": "nlpipe.QAPrompt.v2"},
    "selector": {"@misc": "nlpipe.SpanSelector.v3"},
    "reader": {"@misc": "nlpipe.Reader.v1"},
    "mode": "grounded",
    "questions": [],
    "batch_size": 16,
    "top_k": 1,
    "copy_model": False,
}


@Language.factory("llama_qa", default_config=DEFAULT_CONFIG,
                  requires=["doc.sents", "doc.ents", "token.lemma", "token.pos", "token.dep"],
                  assigns=["doc.spans", "doc._.answers", "doc._.qa_error"])
def make_llama_qa(nlp: Language, name: str, model: Llama, evidence: EvidenceSelector, prompt: QAPrompt,
                  selector: SpanSelector, reader: Reader, mode: Literal["reader", "grounded", "generative"],
                  questions: List[str], batch_size: PositiveInt, top_k: PositiveInt, copy_model: bool) -> "LlamaQA":
    """`mode`: "grounded" (the span selector ranks typed candidates), "reader" (the trained
    reader picks a span or says "no answer") or "generative" (the model's reply). `batch_size`:
    documents whose questions go to the model together (each model call is bounded by the
    model's max_batch_tokens). `top_k` > 1 (reader and grounded modes) also gives each
    answer's k best distinct spans with their confidences."""
    if top_k > MAX_TOP_K:
        raise ConfigError(Errors.E085.format(key="top_k", value=top_k, message=(
            f"at most {MAX_TOP_K} alternatives are ranked; give a whole number from 1 to {MAX_TOP_K}")))
    if top_k > 1 and mode == "generative":
        raise ConfigError(Errors.E085.format(key="top_k", value=top_k, message=(
            "alternatives are ranked spans, so top_k > 1 needs mode = \"reader\" or \"grounded\"")))
    if mode == "grounded":
        selector = selector_for_model(selector, model)
    name_pipeline(nlp)
    return LlamaQA(nlp, name, model, evidence, prompt, selector, mode, questions, batch_size, copy_model, top_k,
                   reader)


def selector_for_model(selector: SpanSelector, llm: Llama) -> SpanSelector:
    """The selector itself, unless its weights are the shipped file's and the model is not the
    one they (and the shipped reader they read) were fitted for: then the shipped weights fitted
    without a reader (single weights set in the config kept), with a warning (W001) that says
    how to fit weights for this model."""
    if selector.weights_file != DEFAULT_WEIGHTS_FILE:
        return selector  # the user's own weights file
    fitted_for = SHIPPED["provenance"]["model"]  # "smollm2-135m (SmolLM2-135M-Instruct, float32)"
    if model_identity(fitted_for.split(" (")[0]) == model_identity(llm.path):
        return selector
    return without_reader(selector, llm)


def without_reader(selector: SpanSelector, llm: Llama) -> SpanSelector:
    """The shipped weights fitted without a reader, with the selector's own settings (a threshold
    the user chose included; else the fallback file's), and W001."""
    warnings.warn(Warnings.W001.format(fitted=SHIPPED["provenance"]["model"], model=llm.path, fallback=NO_READER_WEIGHTS_FILE),
                  NlpipeWarning, stacklevel=2)
    fallback = read_weights(NO_READER_WEIGHTS_FILE)
    threshold = None  # answers every question, as the selector did
    if selector.threshold is not None:
        threshold = fallback["answerability"]["threshold"] if selector.chosen_threshold is None \
            else selector.chosen_threshold
    return SpanSelector(selector.max_sentences, selector.max_candidates, {**fallback["weights"], **selector.overrides},
                        fallback["temperature"], fallback["answerability"]["weights"], threshold,
                        NO_READER_WEIGHTS_FILE, selector.overrides, fallback["lexicon"], selector.chosen_threshold)


def model_identity(path) -> str:
    """A known model by its name, wherever its copy is (the per-user cache, ./models/NAME: both are
    that model converted); any other model by its resolved path."""
    path = Path(path)
    return path.name if path.name in catalog.LLM_MODELS else str(path.resolve())


class LLMPipe(Pipe):
    """A component that runs a language model: the pipeline's LLM stage starts at the first one,
    so everything before it can run in spaCy worker processes (processing.llm_stage)."""

    llm: Llama


class LlamaQA(LLMPipe):
    """Answers every question of the config and of `doc._.questions`: `doc.spans["answers"]`
    and `doc._.answers` (see answers.py). mode "grounded": a span of the Doc chosen among
    typed candidates; "generative": the model's reply as it is; "reader": the trained reader's
    span, or "no answer"."""

    def __init__(self, nlp: Language, name: str, llm: Llama, evidence: EvidenceSelector, prompt: QAPrompt,
                 selector: SpanSelector, mode: str, questions: List[str], batch_size: int, copy_model: bool,
                 top_k: int = 1, reader: Reader | None = None):
        self.name = name
        self.reader = reader if reader is not None else Reader()
        self.llm = llm
        self.task = QATask(evidence, prompt, questions, self.annotate)
        self.selector = selector
        self.mode = mode
        self.batch_size = batch_size
        self.copy_model = copy_model
        self.top_k = top_k
        # Called as each question is answered, before its Doc is done (a Doc waits for all of its
        # questions, a batch's Docs for their shared generation): progress that moves as work does.
        self.on_answered: Callable[[], None] | None = None
        self._nlp = nlp  # questions and replies are annotated by the components before this one

    @property
    def strategy(self) -> Generative | Grounded:
        if self.mode == "generative":
            return Generative()
        # Questions without candidates abstain as the reader does, when the selector abstains at all.
        threshold = self.reader.threshold if self.selector.uses_reader and self.selector.threshold is not None \
            else None
        return Grounded(self.selector, self.top_k, threshold)

    @property
    def questions(self) -> list[str]:
        return self.task.questions

    @questions.setter
    def questions(self, questions: list[str]) -> None:
        self.task.questions = list(questions)

    def __call__(self, doc: Doc) -> Doc:
        error_handler = self.get_error_handler()
        try:
            return next(self.answer([doc]))
        except Exception as err:
            error_handler(self.name, self, [doc], err)
            return doc

    def pipe(self, stream: Iterable[Doc], *, batch_size: int = 128) -> Iterator[Doc]:
        """Docs in order, each as soon as its answers are done. `batch_size` (spaCy's, from
        nlp.pipe) is capped by the component's own."""
        error_handler = self.get_error_handler()
        for docs in util.minibatch(stream, size=min(batch_size, self.batch_size)):
            try:
                yield from self.answer(docs)
            except Exception as err:
                error_handler(self.name, self, docs, err)

    def annotate(self, texts: list[str]) -> list[Doc]:
        """Run the components before this one over short texts (questions, replies)."""
        names = self._nlp.pipe_names
        upstream = names[:names.index(self.name)] if self.name in names else names
        return list(self._nlp.pipe(texts, disable=[n for n in names if n not in upstream]))

    def answer(self, docs: list[Doc]) -> Iterator[Doc]:
        """All questions of the batch: one batched generation for those that need a reply, then
        candidate ranking a group of documents at a time; each Doc is yielded when done."""
        asked = self.ask(docs)
        yield from in_order(docs, asked, self._reported(self.answered(asked)))

    def answered(self, asked: list[Asked]) -> Iterator[tuple[int, Answer]]:
        """(row, answer) for every question, as each is done."""
        if self.mode == "reader":
            yield from self.reader.answer(asked, self.llm, self.top_k)
            return
        readings = self.readings(asked)
        strategy = self.strategy
        candidates = [strategy.candidates(a, r) for a, r in zip(asked, readings)]
        replies = self.replies(asked, [strategy.needs_reply(a, c, r) for a, c, r in zip(asked, candidates, readings)])
        candidates = [c if r is None else strategy.with_reply(a, c, r) for a, c, r in zip(asked, candidates, replies)]
        for row, scores in self.rank(asked, candidates):
            yield row, strategy.answer(asked[row], candidates[row], replies[row], scores, readings[row])

    def _reported(self, answered: Iterator[tuple[int, Answer]]) -> Iterator[tuple[int, Answer]]:
        for item in answered:
            if self.on_answered is not None:
                self.on_answered()
            yield item

    def ask(self, docs: list[Doc]) -> list[Asked]:
        asked = []
        for doc in docs:
            doc._.qa_error = None
            set_answers(doc, [])
            try:
                asked.extend(self.task.ask(doc, self.task.questions_for(doc), self.llm))
            except QuestionsError as err:  # fails this Doc alone
                doc._.qa_error = {"type": "bad_questions", "message": str(err)}
        return asked

    def readings(self, asked: list[Asked], always: bool = False) -> list:
        """The trained reader's Reading (or Failure) of each question, with the reader features of
        all its candidates, when the selector's weights use them (or `always`); else None each.
        The verifier reads too where the no-answer model weighs it (or `always`: a recording)."""
        if not always and (self.mode != "grounded" or not self.selector.uses_reader):
            return [None] * len(asked)
        try:
            self.reader.head(self.llm)
        except ConfigError:
            if self.selector.weights_file != DEFAULT_WEIGHTS_FILE:
                raise
            # A model under the shipped model's name that is not it (its reader does not fit).
            self.selector = without_reader(self.selector, self.llm)
            return [None] * len(asked)
        spans = [self.selector.all_candidates(a.ranked, a.question) for a in asked]
        # At least TOP_SPANS best spans: they may join the candidates (SpanSelector.candidates).
        return [reading for _, reading in
                self.reader.read(asked, self.llm, spans, max(self.top_k, TOP_SPANS),
                                 verify=always or self.selector.weighs_verifier)]

    def rank(self, asked: list[Asked], candidates: list[list]) -> Iterator[tuple[int, object]]:
        """(row, candidate scores or Failure) for every question; None for those without candidates."""
        yield from ((row, None) for row, c in enumerate(candidates) if not c)
        rows = [row for row, c in enumerate(candidates) if c]
        requests = [Request(asked[row].request.tokens, asked[row].request.shared,
                            [self.candidate_tokens(span) for span in candidates[row]]) for row in rows]
        for k, scores in self.llm.rank_stream(requests):
            yield rows[k], scores

    def replies(self, asked: list[Asked], needed: list[bool]) -> list[Reply | None]:
        """The generated reply of each question that needs one, in one batched call."""
        rows = [row for row, need in enumerate(needed) if need]
        completions = self.llm.complete([asked[row].request for row in rows]) if rows else []
        replies = [Reply(c) if isinstance(c, Failure) else Reply(c, clean_answer(c.text)) for c in completions]
        for reply, reply_doc in zip(replies, self.annotate([r.text for r in replies])):
            reply.core = answer_core(reply_doc)
        out: list[Reply | None] = [None] * len(asked)
        for row, reply in zip(rows, replies):
            out[row] = reply
        return out

    def candidate_tokens(self, span) -> list[int]:
        # The answer is followed by end-of-turn, so "Denver" cannot win over "Denver Broncos"
        # just for being a likely start.
        eos = self.llm.tokenizer.eos_token_id
        return self.llm.encode_text(span.text) + ([eos] if eos is not None else [])

    def to_disk(self, path, *, exclude=tuple()):
        serializers = {"llama_qa.json": lambda p: p.write_text(json.dumps({"model_copied": self.copy_model}))}
        if self.copy_model:
            # A GGUF or Meta checkpoint is copied as its converted folder.
            serializers["model"] = lambda p: shutil.copytree(self.llm.load().path, p, dirs_exist_ok=True)
        if self.mode == "reader":
            # A few MB: the saved pipeline answers the same without the trained reader's folder.
            serializers["reader"] = lambda p: shutil.copytree(self.reader.folder, p, dirs_exist_ok=True)
        util.to_disk(Path(path), serializers, exclude)

    def from_disk(self, path, *, exclude=tuple()):
        path = Path(path)

        def read_meta(p: Path) -> None:
            if p.is_file() and json.loads(p.read_text()).get("model_copied") and "model" not in exclude:
                self.llm.use_path(path / "model")
        def read_reader(p: Path) -> None:
            if (p / "reader.json").is_file():
                self.reader.use_path(p)
        util.from_disk(path, {"llama_qa.json": read_meta, "reader": read_reader}, exclude)
        return self


def in_order(docs: list[Doc], asked: list[Asked], answered: Iterable[tuple[int, Answer]]) -> Iterator[Doc]:
    """Each Doc, in input order, as soon as every one of its questions has its answer."""
    answers: dict[int, list[Answer]] = {id(doc): [] for doc in docs}
    pending = Counter(id(a.doc) for a in asked)
    next_doc = 0
    # The first (None, None) hands over the Docs that have no questions at once.
    for row, answer in itertools.chain([(None, None)], answered):
        if row is not None:
            key = id(asked[row].doc)
            answers[key].append(answer)
            pending[key] -= 1
        while next_doc < len(docs) and pending[id(docs[next_doc])] == 0:
            doc = docs[next_doc]
            set_answers(doc, sorted(answers[id(doc)], key=lambda a: a.question_index))
            yield doc
            next_doc += 1
