"""The QA prompt: evidence sentences (optionally their entities), then the question, as chat messages.

The context part comes first and does not depend on the question, so the prompts of several
questions about one document share it as a prefix, computed once by the model.
"""

from spacy.tokens import Span
from spacy.util import registry

# Short on purpose: every token of the prompt is computed for every document. On the SQuAD
# train part a list of the evidence's entities ({entities}) in the context cost as many tokens
# as the text and lowered F1 by 1.5 points, so the default leaves it out.
DEFAULT_SYSTEM = "Answer with the shortest exact phrase from the context."
DEFAULT_CONTEXT = "Context: {context}\n\n"
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
