"""Docs as JSON records and back: a run's record of each annotated Doc, and the Doc a record
describes (with token annotations, all that spaCy stores of it)."""

from spacy.tokens import Doc
from spacy.vocab import Vocab

from ..components.answers import answered, set_answer_records


def doc_record(doc_id: str, doc: Doc, annotations: bool = False) -> dict:
    record = {"id": doc_id}
    if answered(doc):
        record["answers"] = doc._.answers
    record["entities"] = [{"text": e.text, "label": e.label_, "start_char": e.start_char, "end_char": e.end_char}
                          for e in doc.ents]
    if annotations:
        record["sentences"] = ([{"start_char": s.start_char, "end_char": s.end_char} for s in doc.sents]
                               if doc.has_annotation("SENT_START") else [])
        record["tokens"] = [{"i": t.i, "text": t.text, "start_char": t.idx, "pos": t.pos_, "tag": t.tag_,
                             "lemma": t.lemma_, "morph": str(t.morph), "dep": t.dep_, "head": t.head.i,
                             "ent": t.ent_type_}
                            for t in doc]
    return record


def record_doc(record: dict, vocab: Vocab) -> Doc:
    """The Doc an annotation record describes (tokens, tags, lemmas, parse, sentences, entities,
    answers, id, error, warning); an empty Doc holding the error of a document never read.
    ValueError when the record has no tokens (written without annotations)."""
    tokens = record.get("tokens")
    if tokens is None and "error" not in record:
        raise ValueError("it has no \"tokens\" (written without --annotations)")
    doc = _annotated_doc(tokens or [], record.get("sentences") or [], vocab)
    doc.ents = [doc.char_span(e["start_char"], e["end_char"], label=e["label"], alignment_mode="expand")
                for e in record.get("entities") or []]
    doc._.doc_id = record["id"]
    answers = record.get("answers")
    if answers is not None:
        set_answer_records(doc, answers)
    error = record.get("error")
    # A question's error is its answer's; only a failure of the whole Doc is the Doc's own.
    if error is not None and all(a.get("error") != error for a in answers or []):
        doc._.qa_error = error
    doc._.qa_warning = record.get("warning")
    return doc


def _annotated_doc(tokens: list[dict], sentences: list[dict], vocab: Vocab) -> Doc:
    words = [t["text"] for t in tokens]
    # spaCy keeps one space after a token as its whitespace; any other gap is a token of its own.
    spaces = [after["start_char"] > t["start_char"] + len(t["text"]) for t, after in zip(tokens, tokens[1:])]
    columns = {name: [t.get(key, "") for t in tokens]
               for name, key in (("pos", "pos"), ("tags", "tag"), ("lemmas", "lemma"), ("morphs", "morph"),
                                 ("deps", "dep"))}
    # A column no component filled is left unset rather than set to empty strings.
    values = {name: column for name, column in columns.items() if any(column)}
    if "deps" in values:
        values["heads"] = [t["head"] for t in tokens]
    elif sentences:  # no parse: the sentences came from a sentencizer or senter
        starts = {s["start_char"] for s in sentences}
        values["sent_starts"] = [t["start_char"] in starts for t in tokens]
    return Doc(vocab, words=words, spaces=[*spaces, False][:len(words)], **values)
