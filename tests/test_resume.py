"""`nlpipe run` against an existing output: resume, interrupt, fingerprints, and never destroying a file.

A rerun must leave the output exactly as one uninterrupted run writes it: the same records,
none twice, none torn. Interrupts land at a chosen record through a hook on the writer (or a
signal this process sends itself there), never by a run being slow. The commands run in this
process with click's CliRunner; building a pipeline is cached across them. One test kills a
real process with SIGKILL (slow: a fresh interpreter imports torch and spaCy).
"""

import json
import os
import re
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from nlpipe import config as nlpipe_config
from nlpipe.cli import main
from nlpipe.io.writers import JsonlWriter, OutputLock, lock_path

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX signals and locks")

REPO = Path(__file__).resolve().parents[1]
QA_CFG = str(REPO / "pipelines" / "qa.cfg")
ANNOTATE_CFG = str(REPO / "pipelines" / "annotate.cfg")
N_DOCS = 6
INTERRUPT_AT = 2  # records written before the interrupt

PLACES = ["Paris", "Lisbon", "Zürich", "São Paulo", "Kraków", "Nairobi", "Osaka", "Reykjavík", "Santa Clara"]
PEOPLE = ["Ada Lovelace", "Alan Turing", "Grace Hopper", "Marie Curie", "Nikola Tesla", "Hedy Lamarr", "Gustave Eiffel"]
THINGS = ["bridge", "library", "observatory", "railway station", "museum", "stadium", "lighthouse"]


def document_text(i: int) -> str:
    """A few sentences, different for every i: places, people, dates, numbers, some non-ASCII."""
    place, person, thing = PLACES[i % len(PLACES)], PEOPLE[i % len(PEOPLE)], THINGS[i % len(THINGS)]
    other = PLACES[(i * 5 + 2) % len(PLACES)]
    sentences = [f"The {thing} in {place} opened in {1850 + 7 * i}.",
                 f"{person} visited it {i % 6 + 2} times and wrote about it in {other}."]
    if i % 2:
        sentences.append(f"It is {40 + 3 * i} metres tall, taller than anything else near the river.")
    if i % 3 == 0:
        sentences.append(f"\n\nIn {1900 + i}, the city council of {place} voted to restore it for €{i * 1000:,}.")
    return " ".join(sentences) + "\n"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("resume")
    docs = root / "docs"
    docs.mkdir()
    for i in range(N_DOCS):
        (docs / f"doc_{i:02d}.txt").write_text(document_text(i), encoding="utf-8")
    (root / "questions.txt").write_text("Where is it?\nWhen did it open?\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def _pipelines() -> dict:
    return {}


@pytest.fixture(autouse=True)
def cached_pipelines(_pipelines, monkeypatch):
    """Each command builds its pipeline once per config for the module: the runs stay fast."""
    build = nlpipe_config.build_pipeline

    def cached(config):
        key = config.to_str()
        if key not in _pipelines:
            _pipelines[key] = build(config)
        return _pipelines[key]
    monkeypatch.setattr(nlpipe_config, "build_pipeline", cached)


def qa_args(corpus, qa_overrides, output, *extra) -> list[str]:
    overrides = [item for key, value in qa_overrides.items() for item in (f"--{key}", (value if isinstance(value, str) else json.dumps(value)))]
    return ["run", QA_CFG, "--input", str(corpus / "docs"), "--questions", str(corpus / "questions.txt"),
            "--output", str(output), "--batch-size", "2", *overrides, *extra]


def annotate_args(source, output, *extra) -> list[str]:
    return ["run", ANNOTATE_CFG, "--input", str(source), "--output", str(output), "--no-annotations", *extra]


def run_cli(args: list[str], expect: int = 0, stdin: str | None = None):
    """The CLI in this process; a run that should succeed must not raise."""
    result = CliRunner(catch_exceptions=expect == 0).invoke(main, args, input=stdin,
                                                            env={"COLUMNS": "400"}, color=False)
    assert result.exit_code == expect, (result.exit_code, result.output, result.exception)
    return result


def read_records(output: Path) -> list[dict]:
    data = output.read_bytes()
    assert data == b"" or data.endswith(b"\n"), f"torn last line: {data[-200:]!r}"
    return [json.loads(line) for line in data.splitlines()]


def summary_count(result, label: str) -> int:
    """A number from the summary table, e.g. label 'resumed (already done)'."""
    match = re.search(rf"^\W*{re.escape(label)}\W+(\d+)\W*$", result.output, re.MULTILINE)
    assert match, f"no '{label}' row in the summary:\n{result.output}"
    return int(match.group(1))


def assert_same_records(records: list[dict], reference: list[dict]) -> None:
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)), f"duplicate records: {ids}"
    assert ids == [r["id"] for r in reference]
    for got, want in zip(records, reference):
        assert set(got) == set(want), got["id"]
        assert got["entities"] == want["entities"] and got["fingerprint"] == want["fingerprint"], got["id"]
        assert len(got["answers"]) == len(want["answers"]), got["id"]
        for answer, expected in zip(got["answers"], want["answers"]):
            # Exact, but for log-probabilities and what is computed from them: a batch of other
            # documents pads the prompts differently, which moves floats in the last digits.
            for key, value in expected.items():
                if isinstance(value, float):
                    assert answer[key] == pytest.approx(value, abs=1e-4), (got["id"], key)
                else:
                    assert answer[key] == value, (got["id"], key)


@pytest.fixture(scope="module")
def _reference_cache() -> dict:
    return {}


@pytest.fixture()
def reference_lines(_reference_cache, corpus, qa_overrides, tmp_path_factory) -> list[bytes]:
    """The lines of one uninterrupted QA run, computed once for the module."""
    if "lines" not in _reference_cache:
        output = tmp_path_factory.mktemp("reference") / "reference.jsonl"
        result = run_cli(qa_args(corpus, qa_overrides, output))
        records = read_records(output)
        assert [r["id"] for r in records] == [f"doc_{i:02d}.txt" for i in range(N_DOCS)]
        assert all("error" not in r and len(r["answers"]) == 2 for r in records)
        assert summary_count(result, "resumed (already done)") == 0
        assert f"{N_DOCS}/{N_DOCS} docs" in result.output  # the progress total
        _reference_cache["lines"] = output.read_bytes().splitlines(keepends=True)
    return _reference_cache["lines"]


@pytest.fixture()
def reference(reference_lines) -> list[dict]:
    return [json.loads(line) for line in reference_lines]


@contextmanager
def sigint_not_ignored():
    """A shell that runs the tests in the background may hand us SIGINT ignored; Python would
    then never turn it into KeyboardInterrupt."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.fixture()
def interrupt_at(monkeypatch):
    """interrupt_at(n, action): `action()` runs when record n+1 is about to be written, so n
    records are on disk and the next document's work is done but not yet written."""
    def install(written: int, action):
        write, count = JsonlWriter.write, [0]

        def interrupting_write(self, record):
            if count[0] == written:
                action()
            write(self, record)
            count[0] += 1
        monkeypatch.setattr(JsonlWriter, "write", interrupting_write)
    return install


def ctrl_c():
    raise KeyboardInterrupt


# --- interrupt and resume --------------------------------------------------------------------

@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_run_exits_130_and_resumes_to_the_reference(signum, corpus, qa_overrides, reference,
                                                                   interrupt_at, monkeypatch, tmp_path):
    output = tmp_path / "answers.jsonl"
    interrupt_at(INTERRUPT_AT, lambda: signal.raise_signal(signum))
    with sigint_not_ignored():
        result = run_cli(qa_args(corpus, qa_overrides, output), expect=130)
    assert "Traceback" not in result.output and "resume" in result.output.lower()
    assert f"Interrupted after {INTERRUPT_AT} documents" in result.output
    assert_same_records(read_records(output), reference[:INTERRUPT_AT])  # no torn line, nothing lost

    monkeypatch.undo()
    result = run_cli(qa_args(corpus, qa_overrides, output))
    assert_same_records(read_records(output), reference)
    assert summary_count(result, "resumed (already done)") == INTERRUPT_AT
    assert summary_count(result, "documents") == N_DOCS - INTERRUPT_AT


def test_a_torn_last_line_is_cut_off_and_its_document_rewritten(corpus, qa_overrides, reference_lines, reference,
                                                                tmp_path):
    output = tmp_path / "answers.jsonl"
    # Half of the next record, ending inside a multi-byte character, as a write cut short by kill -9.
    torn = reference_lines[INTERRUPT_AT]
    output.write_bytes(b"".join(reference_lines[:INTERRUPT_AT]) + torn[:len(torn) // 2] + "é".encode()[:1])
    result = run_cli(qa_args(corpus, qa_overrides, output))
    assert_same_records(read_records(output), reference)
    assert summary_count(result, "resumed (already done)") == INTERRUPT_AT


@pytest.mark.parametrize("cut", ["before-the-newline", "after-3-bytes"])
def test_a_last_record_cut_by_a_full_disk_is_redone_never_appended_to(cut, small_input, tmp_path):
    """A full disk can stop a record anywhere, even right before its newline (the line is then
    valid JSON): the rerun must redo that record, not glue the next one onto its line."""
    output = tmp_path / "out.jsonl"
    run_cli(annotate_args(small_input, output))
    finished = output.read_bytes()
    lines = finished.splitlines(keepends=True)
    output.write_bytes(finished[:-1] if cut == "before-the-newline" else b"".join(lines[:2]) + lines[2][:3])
    result = run_cli(annotate_args(small_input, output))
    assert summary_count(result, "documents") == 1
    assert output.read_bytes() == finished
    result = run_cli(annotate_args(small_input, output))  # and the run after it takes the file as it is
    assert summary_count(result, "resumed (already done)") == 3 and output.read_bytes() == finished


def test_rerunning_a_finished_run_changes_nothing(corpus, qa_overrides, reference_lines, tmp_path):
    output = tmp_path / "answers.jsonl"
    output.write_bytes(b"".join(reference_lines))
    result = run_cli(qa_args(corpus, qa_overrides, output))
    assert output.read_bytes() == b"".join(reference_lines)
    assert summary_count(result, "resumed (already done)") == N_DOCS
    assert summary_count(result, "documents") == 0


def test_overwrite_starts_the_output_afresh(corpus, qa_overrides, reference_lines, reference, tmp_path):
    output = tmp_path / "answers.jsonl"
    output.write_bytes(b"".join(reference_lines[:3]))
    result = run_cli(qa_args(corpus, qa_overrides, output, "--overwrite"))
    assert_same_records(read_records(output), reference)
    assert summary_count(result, "documents") == N_DOCS


# --- files that are not ours are never touched ------------------------------------------------

@pytest.fixture()
def small_input(tmp_path) -> Path:
    source = tmp_path / "docs.jsonl"
    source.write_text("".join(json.dumps({"id": f"d{i}", "text": f"Document {i} is about Paris."}) + "\n"
                              for i in range(3)), encoding="utf-8")
    return source


@pytest.mark.parametrize("content", [
    b'{"text": "no id"}\n{"text": "none here either"}\n',  # a JSONL file of the user's, no ids
    b"# Notes\n\nMy own notes, in Markdown.\n",
    b'# a comment line on top\n{"id": "d0", "entities": []}\n',
    b'{"id": "d0", "entities": []}\n',  # an id but no fingerprint: an older nlpipe or another program
    b"no newline at all",
], ids=["no-ids", "markdown", "comment-on-top", "no-fingerprint", "one-line"])
def test_an_output_that_is_not_ours_is_refused_untouched(content, small_input, tmp_path):
    output = tmp_path / "notes.md"
    output.write_bytes(content)
    result = run_cli(annotate_args(small_input, output), expect=2)
    assert "E041" in result.output and "line 1" in result.output
    assert output.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs.jsonl", "notes.md"]  # no lock or temp left


def test_an_output_that_is_not_ours_is_replaced_with_overwrite(small_input, tmp_path):
    output = tmp_path / "notes.md"
    output.write_bytes(b"# Notes\n")
    run_cli(annotate_args(small_input, output, "--overwrite"))
    assert [r["id"] for r in read_records(output)] == ["d0", "d1", "d2"]


def test_a_corrupt_line_in_the_middle_stops_the_run_naming_it(small_input, tmp_path):
    output = tmp_path / "out.jsonl"
    run_cli(annotate_args(small_input, output))
    lines = output.read_bytes().splitlines(keepends=True)
    broken = lines[0] + b"{this is not json\n" + b"".join(lines[1:])
    output.write_bytes(broken)
    result = run_cli(annotate_args(small_input, output), expect=2)
    assert "E040" in result.output and "line 2" in result.output and str(output) in result.output
    assert output.read_bytes() == broken


@pytest.mark.parametrize("role", ["input", "questions"])
def test_an_output_that_is_the_input_or_the_questions_file_is_refused(role, corpus, qa_overrides, small_input,
                                                                      tmp_path):
    questions = tmp_path / "questions.txt"
    questions.write_text("Where is it?\n", encoding="utf-8")
    target = small_input if role == "input" else questions
    before = target.read_bytes()
    args = qa_args(corpus, qa_overrides, target)
    args[args.index("--input") + 1] = str(small_input)
    args[args.index("--questions") + 1] = str(questions)
    result = run_cli(args, expect=2)
    assert "E042" in result.output
    assert target.read_bytes() == before


def test_an_output_inside_the_input_folder_that_it_would_read_is_refused(corpus, qa_overrides):
    output = corpus / "docs" / "answers.md"
    run_cli(qa_args(corpus, qa_overrides, output), expect=2)
    assert not output.exists()


def test_overwrite_with_a_mistyped_input_leaves_the_output_alone(tmp_path, monkeypatch):
    output = tmp_path / "keep.jsonl"
    output.write_bytes(b"twenty lines of precious results\n" * 20)
    monkeypatch.setattr(nlpipe_config, "build_pipeline", lambda config: pytest.fail("built a pipeline"))
    result = run_cli(annotate_args(tmp_path / "typo.jsonl", output, "--overwrite"), expect=2)
    assert "E008" in result.output
    assert output.read_bytes() == b"twenty lines of precious results\n" * 20


def test_overwrite_replaces_the_old_output_only_at_the_first_record(small_input, tmp_path, interrupt_at):
    output = tmp_path / "keep.jsonl"
    output.write_bytes(b"old results\n")
    interrupt_at(0, ctrl_c)  # before the first record is written
    run_cli(annotate_args(small_input, output, "--overwrite"), expect=130)
    assert output.read_bytes() == b"old results\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs.jsonl", "keep.jsonl"]


def test_a_missing_input_loads_nothing_and_creates_no_file(tmp_path, monkeypatch):
    output = tmp_path / "out" / "answers.jsonl"
    monkeypatch.setattr(nlpipe_config, "build_pipeline", lambda config: pytest.fail("built a pipeline"))
    result = run_cli(annotate_args(tmp_path / "missing", output), expect=2)
    assert "E008" in result.output
    assert not output.parent.exists()


def test_a_second_writer_of_the_same_output_exits_2_naming_it(small_input, tmp_path):
    output = tmp_path / "out.jsonl"
    with OutputLock(str(output)):  # another run holding the output (flock: any other open file)
        result = run_cli(annotate_args(small_input, output), expect=2)
    assert "E043" in result.output and str(output) in result.output
    assert not output.exists()
    run_cli(annotate_args(small_input, output))  # released: the output can be written again
    assert not lock_path(str(output)).exists()


@pytest.mark.parametrize("link", [os.symlink, os.link], ids=["symlink", "hard-link"])
def test_a_second_writer_through_another_name_of_the_output_exits_2(link, small_input, tmp_path):
    output, alias = tmp_path / "same.jsonl", tmp_path / "alias.jsonl"
    run_cli(annotate_args(small_input, output))
    before = output.read_bytes()
    link(output, alias)
    more = tmp_path / "more.jsonl"
    more.write_bytes(small_input.read_bytes() + b'{"id": "d3", "text": "A fourth one."}\n')
    with OutputLock(str(output)):  # run A, writing same.jsonl; run B is given its other name
        result = run_cli(annotate_args(more, alias), expect=2)
    assert "E043" in result.output
    assert output.read_bytes() == before


def test_a_users_file_named_like_the_output_plus_lock_is_left_alone(small_input, tmp_path):
    theirs = tmp_path / "Cargo.lock"
    theirs.write_text("my lockfile\n", encoding="utf-8")
    run_cli(annotate_args(small_input, tmp_path / "Cargo"))
    assert theirs.read_text(encoding="utf-8") == "my lockfile\n"
    assert [r["id"] for r in read_records(tmp_path / "Cargo")] == ["d0", "d1", "d2"]


def test_a_file_at_the_lock_path_that_is_not_a_lock_of_ours_is_refused_untouched(small_input, tmp_path):
    output = tmp_path / "out.jsonl"
    theirs = tmp_path / ".out.jsonl.nlpipe-lock"
    theirs.write_text("not an nlpipe lock\n", encoding="utf-8")
    result = run_cli(annotate_args(small_input, output), expect=2)
    assert "E049" in result.output and str(theirs) in result.output
    assert theirs.read_text(encoding="utf-8") == "not an nlpipe lock\n"
    assert not output.exists()


def test_the_lock_file_a_killed_run_left_does_not_block_the_next_run(small_input, tmp_path):
    output = tmp_path / "out.jsonl"
    with OutputLock(str(output)) as lock:
        left = Path(lock.path).read_bytes()
    Path(lock.path).write_bytes(left)  # what a killed run leaves: its lock file, no longer locked
    run_cli(annotate_args(small_input, output))
    assert [r["id"] for r in read_records(output)] == ["d0", "d1", "d2"]
    assert not Path(lock.path).exists()


# --- fingerprints: what produced each record --------------------------------------------------

def test_a_changed_document_is_redone_and_replaces_its_record(small_input, tmp_path):
    output = tmp_path / "out.jsonl"
    run_cli(annotate_args(small_input, output))
    lines = small_input.read_text(encoding="utf-8").splitlines()
    lines[1] = json.dumps({"id": "d1", "text": "Document 1 is now about Rome."})
    small_input.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = run_cli(annotate_args(small_input, output))
    assert summary_count(result, "redone (changed or retried)") == 1
    assert summary_count(result, "resumed (already done)") == 2
    records = read_records(output)
    assert sorted(r["id"] for r in records) == ["d0", "d1", "d2"]
    assert "Rome" in [e["text"] for e in next(r for r in records if r["id"] == "d1")["entities"]]


def test_changed_questions_redo_every_document(corpus, qa_overrides, reference_lines, tmp_path):
    output = tmp_path / "answers.jsonl"
    output.write_bytes(b"".join(reference_lines))
    questions = tmp_path / "more_questions.txt"
    questions.write_text("Where is it?\nWhen did it open?\nWho visited it?\n", encoding="utf-8")
    args = qa_args(corpus, qa_overrides, output)
    args[args.index("--questions") + 1] = str(questions)
    result = run_cli(args)
    assert summary_count(result, "redone (changed or retried)") == N_DOCS
    records = read_records(output)
    assert len(records) == N_DOCS and all(len(r["answers"]) == 3 for r in records)


def test_different_text_through_stdin_is_not_taken_for_done(tmp_path):
    output = tmp_path / "out.jsonl"
    run_cli(annotate_args("-", output), stdin="Paris is in France.\nRome is in Italy.\nOslo is in Norway.\n")
    result = run_cli(annotate_args("-", output), stdin="Berlin is in Germany.\n")
    assert summary_count(result, "resumed (already done)") == 0
    assert summary_count(result, "redone (changed or retried)") == 1
    records = read_records(output)
    assert [r["id"] for r in records] == ["stdin:2", "stdin:3", "stdin:1"]  # redone ones move to the end
    assert records[-1]["entities"][0]["text"] == "Berlin"


def test_failed_documents_are_redone_with_retry_failed(small_input, tmp_path):
    output = tmp_path / "out.jsonl"
    run_cli(annotate_args(small_input, output))
    records = read_records(output)
    # As if d1 had failed for a passing reason (out of memory): same fingerprint, an error record.
    records[1] = {"id": "d1", "error": {"type": "generation_failed", "message": "E021: out of memory"},
                  "fingerprint": records[1]["fingerprint"]}
    output.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    result = run_cli(annotate_args(small_input, output))
    assert summary_count(result, "resumed (already done)") == 3  # a failure is a result until asked
    result = run_cli(annotate_args(small_input, output, "--retry-failed"))
    assert summary_count(result, "redone (changed or retried)") == 1
    assert all("error" not in r for r in read_records(output)) and len(read_records(output)) == 3


def test_a_changed_config_is_refused_unless_append_or_overwrite(small_input, tmp_path):
    output = tmp_path / "out.jsonl"
    run_cli(annotate_args(small_input, output))
    before = output.read_bytes()
    result = run_cli(annotate_args(small_input, output, "--annotations"), expect=2)
    assert "E044" in result.output and "--append" in result.output
    assert output.read_bytes() == before
    more = tmp_path / "more.jsonl"
    more.write_bytes(small_input.read_bytes() + b'{"id": "d3", "text": "A fourth one."}\n')
    result = run_cli(annotate_args(more, output, "--annotations", "--append"))
    assert summary_count(result, "resumed (already done)") == 3  # kept as they were
    records = read_records(output)
    assert output.read_bytes().startswith(before) and "tokens" in records[3] and "tokens" not in records[0]
    run_cli(annotate_args(more, output, "--annotations"))  # continued with this config: no longer refused
    result = run_cli(annotate_args(more, output, "--overwrite"))
    assert summary_count(result, "documents") == 4 and "tokens" not in read_records(output)[3]


def test_overwrite_and_append_together_are_refused(small_input, tmp_path):
    result = run_cli(annotate_args(small_input, tmp_path / "out.jsonl", "--overwrite", "--append"), expect=2)
    assert "E047" in result.output


def test_an_interrupted_redo_keeps_one_record_per_document(small_input, tmp_path, interrupt_at, monkeypatch):
    output = tmp_path / "out.jsonl"
    run_cli(annotate_args(small_input, output))
    old_lines = set(output.read_bytes().splitlines())
    small_input.write_text(small_input.read_text(encoding="utf-8").replace("Paris", "Rome"), encoding="utf-8")
    interrupt_at(1, ctrl_c)
    run_cli(annotate_args(small_input, output), expect=130)
    records = read_records(output)
    assert sorted(r["id"] for r in records) == ["d0", "d1", "d2"]
    assert [json.loads(line)["id"] for line in output.read_bytes().splitlines() if line not in old_lines] == ["d0"]
    monkeypatch.undo()
    result = run_cli(annotate_args(small_input, output))
    assert summary_count(result, "redone (changed or retried)") == 2
    assert len(read_records(output)) == 3 and not old_lines & set(output.read_bytes().splitlines())


def test_a_kill_between_writing_and_dropping_leaves_no_duplicate_after_the_rerun(small_input, tmp_path):
    output = tmp_path / "out.jsonl"
    run_cli(annotate_args(small_input, output))
    old = output.read_bytes()
    small_input.write_text(small_input.read_text(encoding="utf-8").replace("Document 1 ", "Paper 1 "),
                           encoding="utf-8")
    run_cli(annotate_args(small_input, output))
    new_d1 = output.read_bytes().splitlines(keepends=True)[-1]
    output.write_bytes(old + new_d1)  # both records of d1, as a kill before the old one is dropped leaves it
    result = run_cli(annotate_args(small_input, output))
    assert summary_count(result, "documents") == 0
    assert output.read_bytes() == old.splitlines(keepends=True)[0] + old.splitlines(keepends=True)[2] + new_d1


@pytest.mark.parametrize("how", ["redo", "overwrite"])
def test_a_symlinked_output_is_written_through_to_its_target(how, small_input, tmp_path):
    real, link = tmp_path / "real" / "out.jsonl", tmp_path / "link.jsonl"
    run_cli(annotate_args(small_input, real))
    link.symlink_to(real)
    small_input.write_text(small_input.read_text(encoding="utf-8").replace("Document 1 is about Paris",
                                                                           "Document 1 is about Rome"),
                           encoding="utf-8")
    run_cli(annotate_args(small_input, link, *(["--overwrite"] if how == "overwrite" else [])))
    assert link.is_symlink() and link.resolve() == real
    records = read_records(real)
    assert sorted(r["id"] for r in records) == ["d0", "d1", "d2"]
    assert "Rome" in [e["text"] for e in next(r for r in records if r["id"] == "d1")["entities"]]
    assert sorted(p.name for p in real.parent.iterdir()) == ["out.jsonl"]  # no lock or temp left


def test_a_symlinked_docbin_output_is_written_through_to_its_target(small_input, tmp_path):
    real, link = tmp_path / "real" / "out.spacy", tmp_path / "link.spacy"
    real.parent.mkdir()
    link.symlink_to(real)  # dangling until the run writes the DocBin
    run_cli(annotate_args(small_input, link))
    assert link.is_symlink() and real.is_file()
    assert sorted(p.name for p in real.parent.iterdir()) == ["out.spacy"]


# --- nothing to answer ------------------------------------------------------------------------

def test_an_empty_questions_file_exits_2_and_writes_nothing(corpus, qa_overrides, tmp_path):
    questions = tmp_path / "empty.txt"
    questions.write_text("# none yet\n\n", encoding="utf-8")
    output = tmp_path / "answers.jsonl"
    args = qa_args(corpus, qa_overrides, output)
    args[args.index("--questions") + 1] = str(questions)
    result = run_cli(args, expect=2)
    assert "E045" in result.output and not output.exists()


def test_a_qa_run_over_a_folder_without_questions_exits_2(corpus, qa_overrides, tmp_path):
    output = tmp_path / "answers.jsonl"
    args = qa_args(corpus, qa_overrides, output)
    del args[args.index("--questions"):args.index("--questions") + 2]
    result = run_cli(args, expect=2)
    assert "E046" in result.output and not output.exists()


def test_a_qa_run_whose_jsonl_records_have_no_questions_exits_2(small_input, qa_overrides, corpus, tmp_path):
    output = tmp_path / "answers.jsonl"
    args = qa_args(corpus, qa_overrides, output)
    del args[args.index("--questions"):args.index("--questions") + 2]
    args[args.index("--input") + 1] = str(small_input)
    result = run_cli(args, expect=2)
    assert "E048" in result.output
    assert all(r["answers"] == [] for r in read_records(output))


# --- a real process killed at a chosen record -------------------------------------------------

KILL_HOOK = """\
import os, signal
if os.environ.get("NLPIPE_TEST_KILL_AFTER"):
    from nlpipe.io.writers import JsonlWriter

    _after, _write, _count = int(os.environ["NLPIPE_TEST_KILL_AFTER"]), JsonlWriter.write, [0]

    def write(self, record):
        if _count[0] == _after:
            os.kill(os.getpid(), signal.SIGKILL)
        _write(self, record)
        _count[0] += 1

    JsonlWriter.write = write
"""


@pytest.mark.slow
def test_a_killed_process_resumes_to_the_same_output(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(N_DOCS):
        (docs / f"doc_{i:02d}.txt").write_text(document_text(i), encoding="utf-8")
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(KILL_HOOK, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "hook"), "NLPIPE_TEST_KILL_AFTER": str(INTERRUPT_AT)}
    nlpipe_script = Path(sys.executable).parent / "nlpipe"
    output, reference = tmp_path / "out.jsonl", tmp_path / "reference.jsonl"
    killed = subprocess.run([str(nlpipe_script), *annotate_args(docs, output, "--batch-size", "2")], env=env,
                            capture_output=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert len(read_records(output)) == INTERRUPT_AT
    assert lock_path(str(output)).exists()  # left by the killed run; its lock died with it
    result = run_cli(annotate_args(docs, output, "--batch-size", "2"))
    assert summary_count(result, "resumed (already done)") == INTERRUPT_AT
    run_cli(annotate_args(docs, reference, "--batch-size", "2"))
    assert output.read_bytes() == reference.read_bytes()
