"""The Ray engine's read stage: Ray tasks that read the files a run hands over unread.

Kept apart from ray_engine so that a read task's worker process imports only the readers:
importing ray_engine means importing spaCy (and torch through thinc), seconds of CPU per
worker that a 2-core machine would take from the actors starting beside it.
"""

import dataclasses
import json

from ..io.readers import Document, load_document


def read_files(batch: dict, max_chars: int) -> dict:
    """Each row whose document came unread gets its file's text, or the error record a bad
    file gets in a local run."""
    import numpy as np

    return {"item": np.array([_read_row(item, max_chars) for item in batch["item"]], dtype=object)}


def _read_row(item: str, max_chars: int) -> str:
    document, questions, tag = json.loads(item)
    if document["path"] is None:  # read by the driver already (JSONL, stdin, or checked by resume)
        return item
    return json.dumps([dataclasses.asdict(load_document(Document(**document), max_chars)), questions, tag])
