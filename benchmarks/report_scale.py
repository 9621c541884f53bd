"""A report of many documents: its size, the time to write it, and the time headless Chromium takes to open it.

    python benchmarks/report_scale.py [--documents 1000 10000] [--folder DIR]

Documents are SQuAD dev paragraphs annotated once by en_core_web_sm and reused under new ids,
each with one answer record per question of its paragraph (at most four): grounded on one of its
entities with the entity's sentence as evidence, and every fifth a free-form reply; one document
in fifty is a read error. No LLM runs: the report only reads the records. Render time is the wall
time of `chromium --headless --dump-dom` (start-up included) for the report as it opens, and
for it opened at its last document (#doc-N: the page's script unpacks the last page, shows it
and renders that document; Chromium's DOM is taken once that work is done).
"""

import argparse
import json
import random
import re
import tempfile
import time
from pathlib import Path

import spacy
from _common import require_squad

from nlpipe.components.answers import set_answer_records
from nlpipe.components.spacy_models import resolve_spacy_model
from nlpipe.report import write_report
from nlpipe.report.browser import dump_dom, find_chromium
from nlpipe.report.page import EXPANDED, PAGE_SIZE

PARAGRAPHS = 200  # distinct texts, annotated once


def annotated_paragraphs() -> list[tuple[bytes, list[str]]]:
    """(Doc bytes, questions) of the first SQuAD dev paragraphs; bytes, so that each reuse is a fresh Doc."""
    data = json.loads(require_squad().read_text(encoding="utf-8"))["data"]
    paragraphs = [(p["context"], [qa["question"] for qa in p["qas"]][:4]) for a in data for p in a["paragraphs"]]
    nlp = spacy.load(resolve_spacy_model("en_core_web_sm"))
    texts, questions = zip(*paragraphs[:PARAGRAPHS])
    return [(doc.to_bytes(exclude=["tensor"]), q) for doc, q in zip(nlp.pipe(texts), questions)]


def answers(doc, questions: list[str], rng: random.Random) -> list[dict]:
    records = []
    for index, question in enumerate(questions):
        entity = rng.choice(doc.ents) if doc.ents and index % 5 != 4 else None
        evidence = entity.sent if entity is not None else next(doc.sents)
        records.append({
            "question": question, "question_index": index, "text": entity.text if entity else "a free reply",
            "start_char": entity.start_char if entity else None, "end_char": entity.end_char if entity else None,
            "grounded": entity is not None, "confidence": rng.random(), "evidence": evidence.text,
            "evidence_start_char": evidence.start_char, "evidence_end_char": evidence.end_char,
            "logprob": -rng.random() * 3, "generated": None if entity else "a free reply"})
    return records


def synthetic_docs(count: int, paragraphs: list[tuple[bytes, list[str]]], vocab):
    rng = random.Random(0)
    for n in range(count):
        data, questions = paragraphs[n % len(paragraphs)]
        doc = spacy.tokens.Doc(vocab).from_bytes(data)
        doc._.doc_id = f"paragraph-{n}"
        if n % 50 == 49:
            doc._.qa_error = {"type": "bad_input", "message": "not UTF-8 (synthetic)"}
        else:
            set_answer_records(doc, answers(doc, questions, rng))
        yield doc


def measure(count: int, paragraphs, vocab, folder: Path) -> dict:
    report = folder / f"report-{count}.html"
    started = time.perf_counter()
    write_report(synthetic_docs(count, paragraphs, vocab), str(report), title=f"{count:,} synthetic documents")
    written = time.perf_counter() - started
    dom, opened = dump_dom(str(report))
    last, opened_at_last = dump_dom(str(report), anchor=f"doc-{count - 1}", settle_ms=10_000)
    assert len(re.findall(r'<details class="doc" id="doc-\d+"', dom)) == min(count, PAGE_SIZE)
    assert dom.count('class="body"') == EXPANDED
    assert f'<details class="doc" id="doc-{count - 1}" open="">' in last and last.count('class="body"') == 1
    return {"documents": count, "bytes": report.stat().st_size, "write_s": written, "open_s": opened,
            "open_at_last_s": opened_at_last}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--folder", type=Path, help="keep the reports here (default: a temporary folder)")
    args = parser.parse_args()
    if find_chromium() is None:
        raise SystemExit("no chromium on PATH: install it (apt-get install chromium) to measure render times")
    paragraphs = annotated_paragraphs()
    vocab = spacy.blank("en").vocab
    with tempfile.TemporaryDirectory() as temporary:
        folder = args.folder or Path(temporary)
        folder.mkdir(parents=True, exist_ok=True)
        empty = str(folder / "empty.html")
        write_report([], empty)
        print(f"chromium start-up (an empty report): {dump_dom(empty)[1]:.2f} s")
        for count in args.documents:
            m = measure(count, paragraphs, vocab, folder)
            print(f"{m['documents']:>6,} documents: {m['bytes'] / 2**20:6.1f} MiB, written in {m['write_s']:5.1f} s, "
                  f"--dump-dom {m['open_s']:5.2f} s, opened at the last document {m['open_at_last_s']:5.2f} s")


if __name__ == "__main__":
    main()
