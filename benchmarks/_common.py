"""Shared by the benchmark scripts: where the data is, and building pipelines."""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SQUAD_DEV = REPO.parent / "shared" / "data" / "squad-dev-v1.1-part.json"


def require_squad(path: Path = SQUAD_DEV) -> Path:
    if not path.is_file():
        sys.exit(f"{path} not found: these benchmarks read the SQuAD part in ../shared/data")
    return path


def qa_pipeline(overrides: dict | None = None):
    from nlpipe.config import build_pipeline, load_config

    nlp = build_pipeline(load_config(REPO / "pipelines" / "qa.cfg", overrides or {}))
    nlp.get_pipe("llama_qa").llm.load()
    return nlp
