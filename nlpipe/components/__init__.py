"""The spaCy side of nlpipe: the llama_qa component and the pieces it calls."""

from spacy.tokens import Doc

# Registered on import so that `doc._.questions` works as soon as any nlpipe component loads,
# including through the spacy_factories entry point.
for _name in ("questions", "answers"):
    if not Doc.has_extension(_name):
        Doc.set_extension(_name, default=None)
