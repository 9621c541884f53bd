"""The `llama_qa` component: answers questions about each Doc with a LLaMA model, grounded in the Doc."""

import json
import shutil
from pathlib import Path
from typing import Iterable, Iterator, List

from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.util import minibatch

from ..llm.engine import Completion, Llama, PromptBatch
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
    "selector": {"@misc": "nlpipe.SpanSelector.v1"},
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
        """All (doc, question) pairs of the batch go through ONE batched generation call; the
        context part of a document's prompts is computed once for all its questions."""
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
            analyses = self.analyse(questions)
            evidences = [self.evidence.select(index, analysis) for analysis in analyses]
            shared = self.evidence.shared(index, evidences)
            for analysis, evidence in zip(analyses, evidences):
                messages = self.prompt.messages(analysis.text, shared if shared is not None else evidence)
                parts.append(self.llm.encode_chat_split(messages, self.prompt.question_part(analysis.text)))
                jobs.append((doc, analysis, evidence))
        if not jobs:
            return docs
        prompts = PromptBatch.from_parts(parts)
        completions = self.llm.complete(prompts)
        replies = [clean_answer(c.text) for c in completions]
        cores = [answer_core(reply_doc) for reply_doc in self.annotate(replies)]
        matched = [ground(reply, core, doc, evidence, analysis) if not completion.error else None
                   for (doc, analysis, evidence), reply, core, completion in zip(jobs, replies, cores, completions)]
        if self.mode == "grounded":
            choices = self.choose_spans(jobs, prompts, completions, cores, matched)
        else:
            # The reply as it is; its offsets only where it appears verbatim in the document.
            choices = [Choice(find_phrase(reply, doc, evidence) if reply else None, None)
                       for (doc, _, evidence), reply in zip(jobs, replies)]
        for (doc, analysis, evidence), completion, reply, choice in zip(jobs, completions, replies, choices):
            doc._.answers.append(make_answer(doc, analysis, evidence, completion, reply, choice, self.mode))
        return docs

    def choose_spans(self, jobs, prompts: PromptBatch, completions: list[Completion], cores: list[str],
                     matched) -> list[Choice]:
        """Score every job's candidates in one pass and pick a span for each."""
        failed = [bool(c.error) for c in completions]
        candidates = [[] if failure else self.selector.candidates(doc, evidence, analysis, offsets)
                      for (doc, analysis, evidence), offsets, failure in zip(jobs, matched, failed)]
        eos = [self.llm.tokenizer.eos_token_id] if self.llm.tokenizer.eos_token_id is not None else []
        room = [self.llm.context_length - length for length in prompts.lengths()]
        continuations = []
        for i, spans in enumerate(candidates):
            # The answer is followed by end-of-turn, so "Denver" cannot win over "Denver
            # Broncos" just for being a likely start.
            tokens = [self.llm.tokenizer(span.text, add_special_tokens=False)["input_ids"] + eos for span in spans]
            fits = [n for n, t in enumerate(tokens) if len(t) <= room[i]]  # a candidate past the context is dropped
            candidates[i] = [spans[n] for n in fits]
            continuations.append([tokens[n] for n in fits])
        scores = self.llm.score_batch(prompts, continuations)
        return [Choice(None, None) if failure else self.selector.choose(analysis, spans, job_scores, core, offsets)
                for (_, analysis, _), spans, job_scores, core, offsets, failure
                in zip(jobs, candidates, scores, cores, matched, failed)]

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


def make_answer(doc: Doc, analysis: QuestionAnalysis, evidence: list[Span], completion: Completion,
                reply: str, choice: Choice, mode: str) -> dict:
    if choice.offsets is None:
        # Document text is data: in grounded mode a reply that is not a span of the document
        # is only ever given as the answer to a free-form question (why/how/yes-no).
        free_form = mode == "generative" or analysis.qtype in FREE_FORM_TYPES
        text, start, end = (reply or completion.text) if free_form else "", None, None
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
        "logprob": completion.mean_logprob,
        "generated": completion.text,
    }
    if completion.error:
        answer["error"] = completion.error
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
