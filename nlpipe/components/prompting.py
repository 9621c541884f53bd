"""The QA prompt: worked examples, evidence sentences (optionally their entities), then the
question, as chat messages.

The worked examples and the context part come first and do not depend on the question, so the
prompts of several questions about one document share them as a prefix, computed once by the
model.
"""

from typing import List

from pydantic.v1 import StrictStr
from spacy.tokens import Span
from spacy.util import registry

from ..errors import ConfigError, Errors

# Short on purpose: every token of the prompt is computed for every document. On the SQuAD
# train part a list of the evidence's entities ({entities}) in the context cost as many tokens
# as the text and lowered F1 by 1.5 points, so the default leaves it out.
DEFAULT_SYSTEM = "Answer with the shortest exact phrase from the context."
DEFAULT_CONTEXT = "Context: {context}\n\n"
DEFAULT_QUESTION = "Question: {question}\nShort answer:"
# (context, question, answer) turns shown before the document: a small model that has seen a
# short exact phrase answer a question gives such phrases more of its likelihood, which is what
# ranks the candidates. Invented texts, so that no evaluation article leaks into the prompt.
# Held out by article on the pool: answer-whenever F1 60.9 → 63.2 with these three, the weights
# refitted for them (README, Measured).
DEFAULT_EXAMPLES = [
    ["The Harbour Bridge opened in 1932 after eight years of work. Its steel arch carries rail, road and foot "
     "traffic, and about 1,400 workers built it.", "How many workers built the bridge?", "about 1,400"],
    ["Lena Ortiz founded the Meridian Press in Lisbon. The press later moved to Porto, where it printed poetry "
     "and maps.", "Where did the press move?", "Porto"],
    ["The violin was made by the workshop of Antonio Brenner. Its varnish, a mixture of resin and oil, gives it "
     "a dark red colour.", "What is the varnish made of?", "a mixture of resin and oil"],
]


class QAPrompt:
    def __init__(self, system: str = DEFAULT_SYSTEM, context_template: str = DEFAULT_CONTEXT,
                 question_template: str = DEFAULT_QUESTION, examples=()):
        self.system = system
        self.context_template = context_template
        self.question_template = question_template
        self.examples = [tuple(example) for example in examples]

    def question_part(self, question: str) -> str:
        return self.question_template.format(question=question.strip())

    def user_turn(self, context: str, entities: str, question: str) -> dict:
        return {"role": "user",
                "content": self.context_template.format(context=context, entities=entities) + self.question_part(question)}

    def messages(self, question: str, evidence: list[Span], with_examples: bool = True) -> list[dict]:
        entities = [ent for sent in evidence for ent in sent.ents]
        listed = "; ".join(dict.fromkeys(f"{ent.text} ({ent.label_})" for ent in entities)) or "none"
        # A worked example's text is not annotated: its {entities} list is empty.
        shown = [turn for context, asked, answer in (self.examples if with_examples else ())
                 for turn in (self.user_turn(context, "", asked), {"role": "assistant", "content": answer})]
        return [{"role": "system", "content": self.system}, *shown,
                self.user_turn(" ".join(s.text.strip() for s in evidence), listed, question)]


@registry.misc("nlpipe.QAPrompt.v1")
def make_qa_prompt_v1(system: str = DEFAULT_SYSTEM, context_template: str = DEFAULT_CONTEXT,
                      question_template: str = DEFAULT_QUESTION) -> QAPrompt:
    """The prompt without worked examples (what span_selector.v1-v4.json were fitted on)."""
    return QAPrompt(system, context_template, question_template)


@registry.misc("nlpipe.QAPrompt.v2")
def make_qa_prompt(system: str = DEFAULT_SYSTEM, context_template: str = DEFAULT_CONTEXT,
                   question_template: str = DEFAULT_QUESTION,
                   examples: List[List[StrictStr]] = DEFAULT_EXAMPLES) -> QAPrompt:
    """`context_template` may use {context} and {entities}; `question_template` uses {question};
    `examples`: [context, question, answer] turns shown before the document ([] for none)."""
    for number, example in enumerate(examples, 1):
        if len(example) != 3 or not all(part.strip() for part in example):
            raise ConfigError(Errors.E002.format(section="components.llama_qa.prompt", key="examples", message=(
                f"example {number} is not [context, question, answer], three non-blank texts")))
    return QAPrompt(system, context_template, question_template, examples)
