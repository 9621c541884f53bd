"""The QA prompt: evidence sentences and their entities, turned into chat messages."""

from spacy.tokens import Span
from spacy.util import registry

DEFAULT_SYSTEM = ("You answer questions about a text. Reply with the shortest exact phrase from "
                  "the context that answers the question: a name, a number, a date or a few "
                  "words. Never reply with a full sentence.")
DEFAULT_TEMPLATE = "Context: {context}\n\nNamed entities: {entities}\n\nQuestion: {question}\nShort answer:"


class QAPrompt:
    def __init__(self, system: str = DEFAULT_SYSTEM, template: str = DEFAULT_TEMPLATE):
        self.system = system
        self.template = template

    def messages(self, question: str, evidence: list[Span]) -> list[dict]:
        entities = [ent for sent in evidence for ent in sent.ents]
        listed = "; ".join(f"{ent.text} ({ent.label_})" for ent in entities) or "none"
        user = self.template.format(context=" ".join(s.text.strip() for s in evidence),
                                    entities=listed, question=question.strip())
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]


@registry.misc("nlpipe.QAPrompt.v1")
def make_qa_prompt(system: str = DEFAULT_SYSTEM, template: str = DEFAULT_TEMPLATE) -> QAPrompt:
    """`template` may use {context}, {entities} and {question}."""
    return QAPrompt(system, template)
