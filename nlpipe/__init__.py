"""nlpipe: spaCy annotations feeding a LLaMA-architecture model that answers questions about documents."""

__version__ = "0.1.0"
