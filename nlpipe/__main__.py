"""`python -m nlpipe` runs the command line."""

from .cli import main

main(prog_name="nlpipe")
