"""The `llama_qa` component: answers questions about each Doc with a LLaMA model, grounded in the Doc."""

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, List

from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.util import minibatch

from ..errors import Errors
from ..llm.engine import Completion, Llama, PromptBatch
from ..pipeline_meta import name_pipeline
from . import llm as _llm  # noqa: F401  registers nlpipe.Llama.v1
from .evidence import EvidenceSelector
from .grounding import answer_core, clean_answer, find_phrase, ground
from .prompting import QAPrompt
from .selection import FREE_FORM_TYPES, Choice, SpanSelector
from .questions import QuestionAnalysis, analyse_question

MODES = ("grounded", "generative")
QUESTION_CACHE_SIZE = 4096
PROMPT_OVERHEAD_TOKENS = 160  # system prompt, entity list, question, chat markup
DEFAULT_CONFIG = {
    "model": {"@misc": "nlpipe.Llama.v1"},
    "evidence": {"@misc": "nlpipe.EvidenceSelector.v1"},
    "prompt": {"@misc": "nlpipe.QAPrompt.v1"},
    "selector": {"@misc": "nlpipe.SpanSelector.v2"},
    "mode": "grounded",
    "questions": [],
    "batch_size": 16,
    "copy_model": False,
}


@Language.factory("llama_qa", default_config=DEFAULT_CONFIG)
def make_llama_qa(nlp: Language, name: str, model: Llama, evidence: EvidenceSelector, prompt: QAPrompt,
                  selector: SpanSelector, mode: str, questions: List[str], batch_size: int,
                  copy_model: bool) -> "LlamaQA":
    if mode not in MODES:
        raise ValueError(f"[components.{name}] mode must be one of {', '.join(MODES)}, not '{mode}'")
    name_pipeline(nlp)
    return LlamaQA(nlp, name, model, evidence, prompt, selector, mode, questions, batch_size, copy_model)


class LlamaQA:
    """Writes `doc._.answers`: one dict per question from the config and from `doc._.questions`.

    mode "grounded": the answer is a span of the Doc chosen among typed candidates (free-form
    why/how/yes-no questions keep the generated reply, marked grounded: false); mode
    "generative": the model's reply as it is.
    """

    def __init__(self, nlp: Language, name: str, llm: Llama, evidence: EvidenceSelector, prompt: QAPrompt,
                 selector: SpanSelector, mode: str, questions: List[str], batch_size: int, copy_model: bool):
        self.nlp = nlp  # questions and replies are annotated by the components before this one
        self.name = name
        self.llm = llm
        self.evidence = evidence
        self.prompt = prompt
        self.selector = selector
        self.mode = mode
        self.questions = list(questions)
        self.batch_size = batch_size
        self.copy_model = copy_model
        self._question_cache: dict[str, QuestionAnalysis] = {}

    def __call__(self, doc: Doc) -> Doc:
        return next(iter(self.pipe([doc])))

    def pipe(self, docs: Iterable[Doc], batch_size: int | None = None) -> Iterator[Doc]:
        # nlp.pipe always passes its own batch size; ours caps it, since it bounds the
        # number of prompts generated together (memory).
        size = min(batch_size, self.batch_size) if batch_size else self.batch_size
        for batch in minibatch(docs, size=size):
            yield from self.answer_batch(list(batch))

    def questions_for(self, doc: Doc) -> list[str]:
        own = doc._.questions or []
        return list(dict.fromkeys(q.strip() for q in [*self.questions, *own] if q and q.strip()))

    def annotate(self, texts: list[str]) -> list[Doc]:
        """Run the components before this one over short texts (questions, replies)."""
        names = self.nlp.pipe_names
        upstream = names[:names.index(self.name)] if self.name in names else names
        return list(self.nlp.pipe(texts, disable=[n for n in names if n not in upstream]))

    def analyse(self, questions: list[str]) -> list[QuestionAnalysis]:
        new = [q for q in dict.fromkeys(questions) if q not in self._question_cache]
        for text, question_doc in zip(new, self.annotate(new)):
            self._question_cache[text] = analyse_question(question_doc)
        analyses = [self._question_cache[q] for q in questions]
        while len(self._question_cache) > QUESTION_CACHE_SIZE:  # per-document questions are endless
            del self._question_cache[next(iter(self._question_cache))]
        return analyses

    def answer_batch(self, docs: list[Doc]) -> list[Doc]:
        """All (doc, question) pairs of the batch are scored, and generated where a reply is
        needed, in ONE batched call each; a document's context is computed once for all its
        questions."""
        jobs, parts = [], []
        # Evidence never takes more of the context window than the model has: what the system
        # prompt, question and reply need is kept free.
        room = self.llm.context_length - self.llm.max_new_tokens - PROMPT_OVERHEAD_TOKENS
        self.evidence.max_tokens = max(16, min(self.evidence.max_tokens, room))
        for doc in docs:
            doc._.answers = []
            questions = self.questions_for(doc)
            if not questions or not doc.text.strip():
                continue
            index = self.evidence.index(doc, self.llm.count_tokens)
            doc_jobs = []
            for analysis in self.analyse(questions):
                ranked = self.evidence.rank(index, analysis)
                doc_jobs.append(Job(doc, analysis, self.evidence.fit(index, ranked), ranked))
            shared = self.evidence.shared(index, [job.evidence for job in doc_jobs])
            for job in doc_jobs:
                messages = self.prompt.messages(job.analysis.text, shared if shared is not None else job.evidence)
                parts.append(self.llm.encode_chat_split(messages, self.prompt.question_part(job.analysis.text)))
            jobs.extend(doc_jobs)
        if not jobs:
            return docs
        prompts = PromptBatch.from_parts(parts)
        if self.mode == "grounded":
            for job in jobs:
                job.candidates = self.selector.candidates(job.ranked, job.analysis)
        self.generate_replies(jobs, prompts)
        if self.mode == "grounded":
            self.choose_spans(jobs, prompts)
        else:
            # The reply as it is; its offsets only where it appears verbatim in the document.
            for job in jobs:
                job.choice = Choice(find_phrase(job.reply, job.doc, job.evidence) if job.reply else None, None)
        for job in jobs:
            job.doc._.answers.append(make_answer(job, self.mode))
        return docs

    def generate_replies(self, jobs: list["Job"], prompts: PromptBatch) -> None:
        """Generate for the jobs that need a reply: all in generative mode; in grounded mode the
        free-form questions, those without candidates, and all when the selector weighs replies."""
        rows = [i for i, job in enumerate(jobs)
                if self.mode == "generative" or not job.candidates or self.selector.uses_reply]
        completions = self.llm.complete(prompts.subset(rows)) if rows else []
        generated = [(jobs[i], c) for i, c in zip(rows, completions)]
        for job, completion in generated:
            job.completion, job.reply, job.error = completion, clean_answer(completion.text), completion.error
        cores = [answer_core(reply_doc) for reply_doc in self.annotate([job.reply for job, _ in generated])]
        for (job, _), core in zip(generated, cores):
            job.core = core
            if not job.error:
                job.reply_offsets = ground(job.reply, core, job.doc, job.evidence, job.analysis)

    def choose_spans(self, jobs: list["Job"], prompts: PromptBatch) -> None:
        """Score every job's candidates in one pass and pick a span for each."""
        eos = [self.llm.tokenizer.eos_token_id] if self.llm.tokenizer.eos_token_id is not None else []
        continuations = []
        for job, length in zip(jobs, prompts.lengths()):
            if job.error:
                job.candidates = []
            elif job.reply_offsets is not None and self.selector.uses_reply:
                reply_span = job.doc.char_span(*job.reply_offsets, alignment_mode="expand")
                if reply_span is not None and all((s.start, s.end) != (reply_span.start, reply_span.end)
                                                  for s in job.candidates):
                    job.candidates.insert(0, reply_span)
            # The answer is followed by end-of-turn, so "Denver" cannot win over "Denver
            # Broncos" just for being a likely start.
            tokens = [self.llm.tokenizer(span.text, add_special_tokens=False)["input_ids"] + eos
                      for span in job.candidates]
            fits = [n for n, t in enumerate(tokens) if length + len(t) <= self.llm.context_length]
            if job.candidates and not fits:
                job.error = Errors.E018.format(n_tokens=length, context=self.llm.context_length,
                                               max_new=min(len(t) for t in tokens))
            job.candidates = [job.candidates[n] for n in fits]
            continuations.append([tokens[n] for n in fits])
        for job, scores in zip(jobs, self.llm.score_batch(prompts, continuations)):
            if scores is None:
                job.error = Errors.E021.format(device=self.llm.device, n=1, reason="scoring its candidates")
                job.choice = Choice(None, None)
            elif job.error:
                job.choice = Choice(None, None)
            else:
                job.choice = self.selector.choose(job.analysis, job.candidates, job.ranked, scores,
                                                  job.reply_offsets, job.core)

    def to_disk(self, path, *, exclude=tuple()):
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if self.copy_model:
            # A GGUF model is copied as its converted folder.
            shutil.copytree(self.llm.load().path, path / "model", dirs_exist_ok=True)
        (path / "llama_qa.json").write_text(json.dumps({"model_copied": self.copy_model}))

    def from_disk(self, path, *, exclude=tuple()):
        meta_file = Path(path) / "llama_qa.json"
        if meta_file.is_file() and json.loads(meta_file.read_text()).get("model_copied"):
            self.llm.use_path(Path(path) / "model")
        return self


@dataclass
class Job:
    """One (document, question) pair on its way to an answer."""

    doc: Doc
    analysis: QuestionAnalysis
    evidence: list[Span]  # the sentences the prompt shows
    ranked: list[tuple[Span, float]]  # every sentence with its match score, best first
    candidates: list[Span] = field(default_factory=list)
    completion: Completion | None = None  # only when a reply was generated
    reply: str = ""
    core: str = ""
    reply_offsets: tuple[int, int] | None = None
    choice: Choice = field(default_factory=lambda: Choice(None, None))
    error: str | None = None


def make_answer(job: Job, mode: str) -> dict:
    doc, analysis, evidence, choice = job.doc, job.analysis, job.evidence, job.choice
    if choice.offsets is None:
        # Document text is data: in grounded mode a reply that is not a span of the document
        # is only ever given as the answer to a free-form question (why/how/yes-no).
        free_form = mode == "generative" or analysis.qtype in FREE_FORM_TYPES
        text, start, end = (job.reply or (job.completion.text if job.completion else "")) if free_form else "", None, None
        support = evidence[0] if evidence else None
    else:
        start, end = choice.offsets
        text = doc.text[start:end]
        support = _unit_at(doc, start, evidence)
    answer = {
        "question": analysis.text,
        "text": text,
        "start_char": start,
        "end_char": end,
        "grounded": start is not None,
        "confidence": choice.confidence,
        "evidence": support.text if support is not None else None,
        # How likely the model finds the answer: the generated reply's tokens, else the chosen span's.
        "logprob": job.completion.mean_logprob if job.completion else choice.logprob,
        "generated": job.completion.text if job.completion else None,
    }
    if job.error:
        answer["error"] = job.error
    return answer


def _unit_at(doc: Doc, start_char: int, evidence: list[Span]) -> Span | None:
    """The evidence unit (usually a sentence) holding `start_char`, else its sentence."""
    for span in evidence:
        if span.start_char <= start_char < span.end_char:
            return span
    token_span = doc.char_span(start_char, start_char + 1, alignment_mode="expand")
    if token_span is not None and doc.has_annotation("SENT_START"):
        return token_span[0].sent
    return token_span
