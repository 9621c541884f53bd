"""nlpipe: spaCy annotations feeding a LLaMA-architecture model that answers questions about documents.

The job API (nlpipe.jobs) is importable from here: `from nlpipe import load_job, run_job`. It is
imported on first use, so that `import nlpipe` (and the CLI's start) stays light.
"""

from .about import __version__  # noqa: F401  nlpipe.__version__, where users and tools look for it

JOB_API = ("Job", "JobEvents", "load_job", "run_job", "ask", "evaluate", "fit_selector", "report", "train_reader")


def __getattr__(name: str):
    if name in JOB_API:
        from . import jobs

        return getattr(jobs, name)
    raise AttributeError(f"module 'nlpipe' has no attribute {name!r}")
