"""nlpipe: spaCy annotations feeding a LLaMA-architecture model that answers questions about documents."""

from .about import __version__  # noqa: F401  nlpipe.__version__, where users and tools look for it
