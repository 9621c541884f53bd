"""The batch loop: one record per document, in input order, failures reported in place."""

import io
import json
import sys
import tracemalloc
from pathlib import Path

import pytest

from nlpipe.config import JobSettings, build_pipeline, load_config
from nlpipe.errors import InputError
from nlpipe.io.readers import load_document
from nlpipe.io.writers import scan_output
from nlpipe.runner import LocalEngine, Resume, RunSummary, config_fingerprint, count_documents, run

from .conftest import fake_pipeline

REPO = Path(__file__).resolve().parents[1]
ANSWER_KEYS = {"question", "question_index", "text", "start_char", "end_char", "grounded", "confidence", "evidence",
               "evidence_start_char", "evidence_end_char", "logprob",
               "generated", "answerable", "no_answer"}


def read_jsonl(path):
    """The records of `path`, each checked to carry its fingerprint, which is then left out."""
    records = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]
    for record in records:
        assert set(record.pop("fingerprint")) == {"input", "config"}
    return records


@pytest.fixture()
def docs_folder(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a_tower.txt").write_text("The Eiffel Tower is in Paris. It opened in 1889.", encoding="utf-8")
    (folder / "b_binary.txt").write_bytes(b"\x00\x01\x02 not text")
    (folder / "c_bowl.md").write_text("Super Bowl 50 was played at Levi's Stadium in Santa Clara.", encoding="utf-8")
    (folder / "d_empty.txt").write_text("", encoding="utf-8")
    return folder


@pytest.fixture()
def questions_file(tmp_path):
    path = tmp_path / "questions.txt"
    path.write_text("# every document\nWhere is it?\n\nWhen was it?\n", encoding="utf-8")
    return path


def test_run_over_a_folder_with_questions(qa_nlp, docs_folder, questions_file, tmp_path):
    output = tmp_path / "out" / "answers.jsonl"
    seen = []
    settings = JobSettings(input=str(docs_folder), output=str(output), questions=str(questions_file), batch_size=2)
    summary = run(qa_nlp, settings, on_record=lambda record, s: seen.append((record["id"], s.documents)))
    records = read_jsonl(output)
    assert [r["id"] for r in records] == ["a_tower.txt", "b_binary.txt", "c_bowl.md", "d_empty.txt"]
    assert seen == [("a_tower.txt", 1), ("b_binary.txt", 2), ("c_bowl.md", 3), ("d_empty.txt", 4)]
    tower, binary, bowl, empty = records
    assert binary == {"id": "b_binary.txt", "error": {"type": "binary_file", "message": binary["error"]["message"]}}
    for record in (tower, bowl):
        assert [a["question"] for a in record["answers"]] == ["Where is it?", "When was it?"]
        assert all(set(a) == ANSWER_KEYS for a in record["answers"])
        assert "entities" in record and "tokens" not in record
    assert empty == {"id": "d_empty.txt", "error": {"type": "empty_document", "message": "the document has no text"}}
    assert isinstance(summary, RunSummary)
    assert (summary.documents, summary.failed, summary.questions) == (4, 2, 4)
    assert 0 <= summary.grounded <= 4
    assert summary.seconds > 0 and summary.docs_per_second > 0


def test_failed_documents_keep_their_place_in_jsonl_input(qa_nlp, tmp_path):
    source = tmp_path / "docs.jsonl"
    source.write_text('{"id": "one", "text": "Paris is in France.", "questions": ["Where is Paris?"]}\n'
                      "{broken\n"
                      '{"id": "three", "text": "Rome is in Italy."}\n', encoding="utf-8")
    summary = run(qa_nlp, JobSettings(input=str(source), output=str(tmp_path / "o.jsonl")))
    records = read_jsonl(tmp_path / "o.jsonl")
    assert [r["id"] for r in records] == ["one", "docs.jsonl:2", "three"]
    assert records[1]["error"]["type"] == "invalid_json"
    assert [a["question"] for a in records[0]["answers"]] == ["Where is Paris?"]
    assert records[2]["answers"] == []  # no questions for it
    assert (summary.documents, summary.failed, summary.questions) == (3, 1, 1)


def test_a_document_longer_than_max_length_is_answered_from_all_of_it(tmp_path):
    source = tmp_path / "docs"
    source.mkdir()
    filler = "Nothing happens in this sentence at all. " * 10
    text = filler + "The treaty was signed in Lisbon.\n\n" + filler + "The bridge opened in 1937."
    (source / "long.txt").write_text(text, encoding="utf-8")
    (source / "short.txt").write_text("Short.", encoding="utf-8")
    qa_nlp = fake_pipeline(reply="1937", reply_logprob=-0.1)
    qa_nlp.max_length = 150
    questions = tmp_path / "q.txt"
    questions.write_text("When did the bridge open?\n", encoding="utf-8")
    settings = JobSettings(input=str(source), output=str(tmp_path / "o.jsonl"), questions=str(questions),
                           annotations=True)
    summary = run(qa_nlp, settings)
    long_record, short_record = read_jsonl(tmp_path / "o.jsonl")
    assert long_record["id"] == "long.txt" and summary.failed == 0
    [answer] = long_record["answers"]
    assert (answer["text"], answer["start_char"]) == ("1937", text.index("1937"))
    tokens = long_record["tokens"]
    assert "".join(text[t["start_char"]:t["start_char"] + len(t["text"])] for t in tokens) == "".join(
        t["text"] for t in tokens)
    assert {e["text"] for e in long_record["entities"]} >= {"Lisbon", "1937"}
    assert len(long_record["sentences"]) >= 22


def test_annotate_pipeline_writes_tokens(tmp_path, docs_folder):
    nlp = build_pipeline(load_config(REPO / "pipelines" / "annotate.cfg"))
    settings = JobSettings(input=str(docs_folder / "a_tower.txt"), output=str(tmp_path / "ann.jsonl"),
                           annotations=True)
    summary = run(nlp, settings)
    [record] = read_jsonl(tmp_path / "ann.jsonl")
    assert record["id"] == "a_tower.txt" and "answers" not in record
    tokens = record["tokens"]
    assert [t["text"] for t in tokens[:4]] == ["The", "Eiffel", "Tower", "is"]
    assert all(t["pos"] and t["lemma"] and t["dep"] for t in tokens)
    opened = next(t for t in tokens if t["text"] == "opened")
    assert (opened["pos"], opened["lemma"], opened["dep"]) == ("VERB", "open", "ROOT")
    assert len(record["sentences"]) == 2
    assert {"text": "Paris", "label": "GPE"} in [{k: e[k] for k in ("text", "label")} for e in record["entities"]]
    assert (summary.documents, summary.failed, summary.questions) == (1, 0, 0)


def test_stdin_to_stdout(qa_nlp, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b'Paris is in France.\n{"id": "j", "text": "Rome."}\n')))
    summary = run(qa_nlp, JobSettings(input="-", output="-"))
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["stdin:1", "j"]
    assert summary.documents == 2


def test_missing_input_is_E006(qa_nlp, tmp_path):
    with pytest.raises(InputError, match="E006"):
        run(qa_nlp, JobSettings(input=None, output=str(tmp_path / "o.jsonl")))


def test_missing_output_is_E007(qa_nlp, tmp_path):
    with pytest.raises(InputError, match="E007"):
        run(qa_nlp, JobSettings(input=str(tmp_path), output=None))


def test_input_that_does_not_exist_is_E008(qa_nlp, tmp_path):
    with pytest.raises(InputError, match="E008"):
        run(qa_nlp, JobSettings(input=str(tmp_path / "nope"), output=str(tmp_path / "o.jsonl")))


def test_missing_questions_file_is_E009(qa_nlp, tmp_path):
    with pytest.raises(InputError, match="E009"):
        run(qa_nlp, JobSettings(input=str(tmp_path), output=str(tmp_path / "o.jsonl"),
                                questions=str(tmp_path / "q.txt")))


def test_summary_rates():
    assert RunSummary().docs_per_second == 0.0 and RunSummary().questions_per_second == 0.0
    summary = RunSummary(documents=10, questions=20, seconds=4.0)
    assert summary.docs_per_second == 2.5 and summary.questions_per_second == 5.0


def test_spacy_stage_in_worker_processes_gives_the_same_records(tmp_path, docs_folder):
    nlp = build_pipeline(load_config(REPO / "pipelines" / "annotate.cfg"))
    outputs = []
    for n_process in (1, 2):
        output = tmp_path / f"ann{n_process}.jsonl"
        run(nlp, JobSettings(input=str(docs_folder), output=str(output), annotations=True, n_process=n_process))
        outputs.append(read_jsonl(output))
    assert outputs[0] == outputs[1] and len(outputs[0]) == 4


def engine_reading_files(nlp, settings, handed: list):
    """The local engine behind an engine that reads files itself (as Ray's read tasks do); notes
    (id, whether it came unread) of each document it is handed."""
    class ReadingFiles(LocalEngine):
        reads_files = True

        def records(self, pending):
            def read(items):
                for document, questions, tag in items:
                    handed.append((document.id, document.path is not None))
                    yield load_document(document, settings.max_document_chars), questions, tag
            return super().records(read(pending))
    return ReadingFiles(nlp, settings)


def test_an_engine_reading_files_gets_them_unread_unless_resume_must_compare_them(qa_nlp, docs_folder,
                                                                                    questions_file, tmp_path):
    output, reference = tmp_path / "out.jsonl", tmp_path / "reference.jsonl"
    settings = JobSettings(input=str(docs_folder), output=str(output), questions=str(questions_file), batch_size=2)
    handed = []
    run(qa_nlp, settings, engine=engine_reading_files(qa_nlp, settings, handed))
    assert handed == [(name, True) for name in ("a_tower.txt", "b_binary.txt", "c_bowl.md", "d_empty.txt")]
    (docs_folder / "c_bowl.md").write_text("Super Bowl 50 was played in 2016.", encoding="utf-8")
    (docs_folder / "e_new.txt").write_text("Rome is in Italy.", encoding="utf-8")
    handed.clear()
    summary = run(qa_nlp, settings, engine=engine_reading_files(qa_nlp, settings, handed))
    # Ids in the output were read by the runner, to compare fingerprints; the new one was not.
    assert handed == [("c_bowl.md", False), ("e_new.txt", True)]
    assert (summary.resumed, summary.redone, summary.documents) == (3, 1, 2)
    run(qa_nlp, JobSettings(input=str(docs_folder), output=str(reference), questions=str(questions_file),
                            batch_size=2))
    records, expected = ([json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
                         for path in (output, reference))
    # Fingerprints included; floats to their last digits, which batches padded otherwise move.
    assert rounded(sorted(records, key=lambda r: r["id"])) == rounded(expected)


def test_memory_zones_split_a_long_run_without_changing_it(qa_nlp, questions_file, tmp_path, monkeypatch):
    import nlpipe.runner

    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(7):
        (folder / f"{i}.txt").write_text(f"Document {i} mentions Paris and the year {1900 + i}.", encoding="utf-8")
    whole, zoned = tmp_path / "whole.jsonl", tmp_path / "zoned.jsonl"
    run(qa_nlp, JobSettings(input=str(folder), output=str(whole), questions=str(questions_file)))
    monkeypatch.setattr(nlpipe.runner, "ZONE_DOCUMENTS", 3)
    run(qa_nlp, JobSettings(input=str(folder), output=str(zoned), questions=str(questions_file)))
    # Equal but for the last digits of floats: other batches pad the prompts differently.
    assert rounded(read_jsonl(whole)) == rounded(read_jsonl(zoned))


def rounded(value):
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {key: rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [rounded(item) for item in value]
    return value


def test_the_output_is_created_with_the_first_record_after_on_ready(qa_nlp, docs_folder, questions_file, tmp_path):
    output = tmp_path / "out" / "answers.jsonl"
    seen = []
    settings = JobSettings(input=str(docs_folder), output=str(output), questions=str(questions_file))
    run(qa_nlp, settings, on_ready=lambda: seen.append(("ready", output.exists())),
        on_record=lambda record, s: seen.append((record["id"], output.exists())))
    assert seen[:2] == [("ready", False), ("a_tower.txt", True)]


def test_count_documents_is_cheap_and_close(tmp_path, docs_folder):
    source = tmp_path / "docs.jsonl"
    source.write_bytes(b'{"text": "a"}\n{"text": "b"}\n{"text": "c"}')  # no newline after the last
    (docs_folder / "skipped.pdf").write_bytes(b"%PDF")
    assert count_documents(str(docs_folder)) == 4
    assert count_documents(str(source)) == 3
    assert count_documents(str(docs_folder / "a_tower.txt")) == 1
    assert count_documents("-") is None


def test_eta_from_the_rate_so_far():
    assert RunSummary(total=10).eta_seconds is None  # nothing done yet
    assert RunSummary(documents=2, seconds=4.0).eta_seconds is None  # no total (stdin)
    assert RunSummary(documents=2, resumed=4, total=10, seconds=4.0).eta_seconds == 8.0


def test_the_config_fingerprint_follows_what_changes_records(qa_nlp, tmp_path):
    nlp = build_pipeline(load_config(REPO / "pipelines" / "annotate.cfg"))
    plain = config_fingerprint(nlp, JobSettings())
    assert config_fingerprint(nlp, JobSettings(batch_size=3, input="x", output="y")) == plain
    assert config_fingerprint(nlp, JobSettings(annotations=True)) != plain
    assert config_fingerprint(qa_nlp, JobSettings()) != plain


def test_an_empty_questions_file_is_E045_and_qa_without_questions_E046(qa_nlp, docs_folder, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n", encoding="utf-8")
    with pytest.raises(InputError, match="E045"):
        run(qa_nlp, JobSettings(input=str(docs_folder), output=str(tmp_path / "o.jsonl"), questions=str(empty)))
    with pytest.raises(InputError, match=r"E046.*\[components.llama_qa\]"):
        run(qa_nlp, JobSettings(input=str(docs_folder), output=str(tmp_path / "o.jsonl")))
    assert not (tmp_path / "o.jsonl").exists()


def test_resume_keeps_a_few_bytes_per_record_of_the_output_not_the_records(tmp_path):
    """Resuming over 30k small records: what is kept per record is a few digests and flags (with
    the sort, 60 bytes at the peak), not its id and fingerprint as objects (380 bytes: 9 million
    records took 4 GB), and nothing per document of the input. Peak traced allocation, not time."""
    count, input_fingerprint = 30_000, "0123456789abcdef"
    path = tmp_path / "out.jsonl"
    fingerprint = json.dumps({"input": input_fingerprint, "config": "c"})
    lines = (f'{{"id": "doc{i}", "entities": [], "fingerprint": {fingerprint}}}\n' for i in range(count))
    path.write_text("".join(lines), encoding="utf-8")
    tracemalloc.start()
    resume = Resume(scan_output(str(path)), retry_failed=False)
    done = sum(resume.match(f"doc{i}", input_fingerprint)[0] for i in range(count))
    new = resume.match("new", input_fingerprint)
    dropped = resume.dropped(finished=True)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert (done, new, len(dropped)) == (count, (False, None), 0)
    assert peak < 100 * count, f"{peak / count:.0f} bytes per record"
