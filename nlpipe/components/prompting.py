"""The QA prompt: evidence sentences and their entities, then the question, as chat messages.

The context part comes first and does not depend on the question, so the prompts of several
questions about one document share it as a prefix, computed once by the model.
"""

from spacy.tokens import Span
from spacy.util import registry

DEFAULT_SYSTEM = ("You answer questions about a text. Reply with the shortest exact phrase from "
                  "the context that answers the question: a name, a number, a date or a few "
                  "words. Never reply with a full sentence.")
DEFAULT_CONTEXT = "Context: {context}\n\nNamed entities: {entities}\n\n"
DEFAULT_QUESTION = "Question: {question}\nShort answer:"


class QAPrompt:
    def __init__(self, system: str = DEFAULT_SYSTEM, context_template: str = DEFAULT_CONTEXT,
                 question_template: str = DEFAULT_QUESTION):
        self.system = system
        self.context_template = context_template
        self.question_template = question_template

    def question_part(self, question: str) -> str:
        return self.question_template.format(question=question.strip())

    def messages(self, question: str, evidence: list[Span]) -> list[dict]:
        entities = [ent for sent in evidence for ent in sent.ents]
        listed = "; ".join(dict.fromkeys(f"{ent.text} ({ent.label_})" for ent in entities)) or "none"
        context = self.context_template.format(context=" ".join(s.text.strip() for s in evidence), entities=listed)
        return [{"role": "system", "content": self.system},
                {"role": "user", "content": context + self.question_part(question)}]


@registry.misc("nlpipe.QAPrompt.v1")
def make_qa_prompt(system: str = DEFAULT_SYSTEM, context_template: str = DEFAULT_CONTEXT,
                   question_template: str = DEFAULT_QUESTION) -> QAPrompt:
    """`context_template` may use {context} and {entities}; `question_template` uses {question}."""
    return QAPrompt(system, context_template, question_template)
