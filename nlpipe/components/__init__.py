"""The spaCy side of nlpipe: the llama_qa component and the pieces it calls."""

from .answers import register_extensions

# Registered on import so that `doc._.questions` works as soon as any nlpipe component loads,
# including through the spacy_factories entry point.
register_extensions()
