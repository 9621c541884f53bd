"""The QA task's prompt side: a Doc and its questions → one model request per question.

Knows spaCy and token ids, nothing of devices. The evidence budget of each prompt is what the
model's context window leaves after the real prompt rendered with an empty context and the
room for the answer, so nothing is guessed and no other component's settings are changed.
"""

from dataclasses import dataclass
from typing import Callable

from spacy.tokens import Doc, Span

from ..errors import Errors
from ..llm.engine import Llama, Request
from ..surrogates import lone_surrogates_warning, repair_questions
from .evidence import EvidenceSelector
from .prompting import QAPrompt
from .questions import QuestionAnalysis, analyse_question

QUESTION_CACHE_SIZE = 4096


class QuestionsError(ValueError):
    """`doc._.questions` holds something other than a list of strings."""


@dataclass
class Asked:
    """One question about one Doc, ready for the model."""

    doc: Doc
    index: int  # the question's place among the Doc's questions
    question: QuestionAnalysis
    ranked: list[tuple[Span, float]]  # every evidence unit with its match score, best first
    evidence: list[Span]  # the units the prompt shows
    request: Request


class QATask:
    def __init__(self, evidence: EvidenceSelector, prompt: QAPrompt, questions: list[str],
                 annotate: Callable[[list[str]], list[Doc]]):
        self.evidence = evidence
        self.prompt = prompt
        self.questions = list(questions)
        self.annotate = annotate  # the components before llama_qa, over short texts
        self._analyses: dict[str, QuestionAnalysis] = {}

    def questions_for(self, doc: Doc) -> list[str]:
        """The component's questions, then the Doc's own; stripped, blank and repeated ones dropped.
        Lone surrogates in the Doc's are replaced by U+FFFD, and `doc._.qa_warning` says so."""
        own = doc._.questions
        if own is None:
            own = []
        elif isinstance(own, str) or not isinstance(own, (list, tuple)) or not all(isinstance(q, str) for q in own):
            # A string would be asked letter by letter, a dict by its keys: neither is meant.
            raise QuestionsError(Errors.E081.format(kind=_kind(own)))
        # Not UTF-8, a lone surrogate fails spaCy and the model's tokenizer, and with them the batch.
        own, repaired = repair_questions(own)
        if repaired:
            doc._.qa_warning = lone_surrogates_warning({"questions": repaired})
        return list(dict.fromkeys(q.strip() for q in [*self.questions, *own] if q.strip()))

    def analyse(self, questions: list[str]) -> list[QuestionAnalysis]:
        new = [q for q in dict.fromkeys(questions) if q not in self._analyses]
        for text, question_doc in zip(new, self.annotate(new)):
            self._analyses[text] = analyse_question(question_doc)
        analyses = [self._analyses[q] for q in questions]
        while len(self._analyses) > QUESTION_CACHE_SIZE:  # per-document questions are endless
            del self._analyses[next(iter(self._analyses))]
        return analyses

    def ask(self, doc: Doc, questions: list[str], llm: Llama) -> list[Asked]:
        """One request per question. The questions share one context when their evidence fits
        together, so the model computes it once (`Request.shared`)."""
        if not questions or not doc.text.strip():
            return []
        analyses = self.analyse(questions)
        bare = [self.room(a.text, llm, False) for a in analyses]
        rooms = [self.room(a.text, llm, True) for a in analyses] if self.prompt.examples else bare
        # The worked examples never crowd out the document: in a window too small for both,
        # the prompt goes without them.
        with_examples = min(rooms) >= self.evidence.budget(min(bare))
        rooms = rooms if with_examples else bare
        index = self.evidence.index(doc, llm.count_tokens, min(rooms))
        ranked = [self.evidence.rank(index, analysis) for analysis in analyses]
        evidence = [self.evidence.fit(index, r, room) for r, room in zip(ranked, rooms)]
        shared = self.evidence.shared(index, evidence, min(rooms))
        prompts = [llm.encode_chat(self.prompt.messages(a.text, shared if shared is not None else e, with_examples))
                   for a, e in zip(analyses, evidence)]
        if len(prompts) > 1:
            common = common_prefix(prompts)
        else:
            # A lone question shares what every document's prompt starts with (the system prompt
            # and the worked examples): the documents of a pass then compute it once.
            common = common_prefix([prompts[0], llm.encode_chat(self.prompt.messages("", [], with_examples))])
        return [Asked(doc, i, analysis, ranked[i], evidence[i], Request(prompts[i], common))
                for i, analysis in enumerate(analyses)]

    def room(self, question: str, llm: Llama, with_examples: bool) -> int:
        """Evidence tokens the window holds: less the answer and the prompt around the evidence."""
        return llm.context_length - llm.max_new_tokens - len(llm.encode_chat(self.prompt.messages(question, [], with_examples)))


def common_prefix(prompts: list[list[int]]) -> int:
    """How many leading token ids all `prompts` share: found on the ids themselves, so it holds
    for any chat template, one that rewrites the messages included."""
    shortest = min(map(len, prompts))
    n = 0
    while n < shortest and all(p[n] == prompts[0][n] for p in prompts):
        n += 1
    return n


def _kind(value) -> str:
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    return f"a {type(value).__name__}" if not isinstance(value, (list, tuple)) else "a list holding non-strings"
