"""Bounds shared by the command line and the components. It imports nothing, so that the CLI,
which names them in its options, starts without loading spaCy or torch."""

# The most alternatives (top_k) an answer lists: a huge k overflowed where spans are ranked.
MAX_TOP_K = 100
