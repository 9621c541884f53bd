"""Interrupting `nlpipe run` and running the same command again, with real processes and signals.

A rerun must leave the output exactly as one uninterrupted run writes it: the same records in
the same order, none twice, none torn. Every run here is the `nlpipe` console script in its own
process, over a folder of 40 documents, with the tiny random Llama answering two questions
about each.

The run to be interrupted is slowed down so that it cannot finish before the signal arrives:
a sitecustomize hook (active only where NLPIPE_TEST_GENERATION_DELAY is set) sleeps before each
batched generation. The signal is sent as soon as a few records are out, so it lands while a
batch of documents is annotated but not yet answered. The reference run and the reruns that
resume are not slowed down.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX signals")

REPO = Path(__file__).resolve().parents[1]
QA_CFG = str(REPO / "pipelines" / "qa.cfg")
# The console script: nlpipe/cli.py has no `if __name__ == "__main__"`, so `python -m nlpipe.cli` does nothing.
NLPIPE = Path(sys.executable).parent / "nlpipe"
N_DOCS = 40
MIN_LINES = 8  # records written before the signal is sent
GENERATION_DELAY = 0.15  # seconds per batch of 2 documents in a run to be interrupted: >= 2 s left after MIN_LINES
STARTUP_TIMEOUT = 120  # seconds for a run to write its first MIN_LINES records
EXIT_TIMEOUT = 120
HOOK = """\
import os, sys
if os.environ.get("NLPIPE_TEST_GENERATION_DELAY"):
    import time
    from nlpipe.llm.engine import Llama

    _delay, _complete = float(os.environ["NLPIPE_TEST_GENERATION_DELAY"]), Llama.complete

    def complete(self, *args, **kwargs):
        time.sleep(_delay)
        return _complete(self, *args, **kwargs)

    Llama.complete = complete
    sys.stderr.write("test hook: generation delayed\\n")
"""

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
    if i % 4 == 1:
        sentences.append(f"\"Why was it built here?\" asked {person.split()[0]}. Nobody knew.")
    if i % 5 == 2:
        sentences.append(f"Its architect, {PEOPLE[(i + 3) % len(PEOPLE)]}, was born in {other}.")
    return " ".join(sentences) + "\n"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("resume")
    docs = root / "docs"
    docs.mkdir()
    for i in range(N_DOCS):
        (docs / f"doc_{i:02d}.txt").write_text(document_text(i), encoding="utf-8")
    (root / "questions.txt").write_text("Where is it?\nWhen did it open?\n", encoding="utf-8")
    (root / "hook").mkdir()
    (root / "hook" / "sitecustomize.py").write_text(HOOK, encoding="utf-8")
    return root


@pytest.fixture()
def command(corpus, qa_overrides):
    def build(output: Path, *extra: str) -> list[str]:
        overrides = []
        for key, value in qa_overrides.items():
            overrides += [f"--{key}", str(value)]
        return [str(NLPIPE), "run", QA_CFG, "--input", str(corpus / "docs"), "--questions",
                str(corpus / "questions.txt"), "--output", str(output), "--batch-size", "2", *overrides,
                "--components.llama_qa.model.max_new_tokens", "8", *extra]
    return build


@contextmanager
def sigint_not_ignored():
    """A shell that runs the tests in the background may hand us SIGINT ignored. A child would
    inherit that, and Python there would never turn Ctrl-C into KeyboardInterrupt; a handled
    signal is reset to the default in the child instead. (No preexec_fn: it is unsafe in a
    process with threads, as torch's.)"""
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.fixture()
def processes(tmp_path, corpus):
    """Starts nlpipe processes (stderr to a file), slowed down if asked; kills any left running
    when the test ends."""
    started = []
    # One torch thread: two busy-waiting OpenMP threads on a loaded machine make the tiny model
    # ~50x slower. Wide console lines, so that messages are not wrapped.
    env = {**os.environ, "COLUMNS": "400", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("NLPIPE_TEST_GENERATION_DELAY", None)
    slow_env = {**env, "NLPIPE_TEST_GENERATION_DELAY": str(GENERATION_DELAY),
                "PYTHONPATH": os.pathsep.join(filter(None, [str(corpus / "hook"), env.get("PYTHONPATH")]))}

    def start(args: list[str], slow: bool = False) -> subprocess.Popen:
        n = len(started)
        stdout = open(tmp_path / f"stdout{n}.txt", "w+", encoding="utf-8")
        stderr = open(tmp_path / f"stderr{n}.txt", "w+", encoding="utf-8")
        with sigint_not_ignored():
            proc = subprocess.Popen(args, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL,
                                    env=slow_env if slow else env)
        proc.stderr_path = tmp_path / f"stderr{n}.txt"
        started.append((proc, stdout, stderr))
        return proc

    yield start
    for proc, stdout, stderr in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stdout.close()
        stderr.close()


def stderr_of(proc: subprocess.Popen) -> str:
    return proc.stderr_path.read_text(encoding="utf-8", errors="replace")


def finish(proc: subprocess.Popen) -> int:
    try:
        return proc.wait(timeout=EXIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"nlpipe did not exit within {EXIT_TIMEOUT} s; stderr:\n{stderr_of(proc)}")


def run_to_end(start, args: list[str]) -> tuple[int, str]:
    proc = start(args)
    return finish(proc), stderr_of(proc)


def start_slowly(start, args: list[str], output: Path) -> subprocess.Popen:
    """A run slowed down by the hook, once it has written at least MIN_LINES records."""
    proc = start(args, slow=True)
    wait_for_lines(proc, output, MIN_LINES)
    assert "test hook: generation delayed" in stderr_of(proc)
    return proc


def wait_for_lines(proc: subprocess.Popen, output: Path, n: int) -> None:
    """Until `output` holds at least n complete lines; fails if the run exits or takes too long."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if output.is_file() and output.read_bytes().count(b"\n") >= n:
            return
        if proc.poll() is not None:
            pytest.fail(f"nlpipe exited with {proc.returncode} before writing {n} records; "
                        f"stderr:\n{stderr_of(proc)}")
        time.sleep(0.005)
    pytest.fail(f"nlpipe wrote fewer than {n} records in {STARTUP_TIMEOUT} s; stderr:\n{stderr_of(proc)}")


def complete_records(output: Path) -> list[dict]:
    """The records on the complete lines of `output` (a torn last line is left out)."""
    data = output.read_bytes()
    return [json.loads(line) for line in data[:data.rfind(b"\n") + 1].splitlines()]


def read_records(output: Path) -> list[dict]:
    data = output.read_bytes()
    assert data == b"" or data.endswith(b"\n"), f"torn last line: {data[-200:]!r}"
    return [json.loads(line) for line in data.splitlines()]


def summary_count(stderr: str, label: str) -> int:
    """A number from the summary table, e.g. label 'resumed (already done)'."""
    match = re.search(rf"^\W*{re.escape(label)}\W+(\d+)\W*$", stderr, re.MULTILINE)
    assert match, f"no '{label}' row in the summary:\n{stderr}"
    return int(match.group(1))


def assert_same_records(records: list[dict], reference: list[dict]) -> None:
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)), f"duplicate records: {ids}"
    assert ids == [r["id"] for r in reference]
    for got, want in zip(records, reference):
        assert set(got) == set(want), got["id"]
        assert got["entities"] == want["entities"], got["id"]
        assert len(got["answers"]) == len(want["answers"]), got["id"]
        for answer, expected in zip(got["answers"], want["answers"]):
            # Exact, but for log-probabilities and what is computed from them: a batch of other
            # documents pads the prompts differently, which moves floats in the last digits.
            assert set(answer) == set(expected), got["id"]
            for key, value in expected.items():
                if isinstance(value, float):
                    assert answer[key] == pytest.approx(value, abs=1e-4), (got["id"], key)
                else:
                    assert answer[key] == value, (got["id"], key)


def assert_prefix_of_reference(records: list[dict], reference: list[dict]) -> None:
    assert 0 < len(records) < len(reference)
    assert_same_records(records, reference[:len(records)])


@pytest.fixture(scope="module")
def _reference_cache() -> dict:
    return {}


@pytest.fixture()
def reference(_reference_cache, command, processes, tmp_path_factory) -> list[dict]:
    """The records of one uninterrupted run, computed once for the module."""
    if "records" not in _reference_cache:
        output = tmp_path_factory.mktemp("reference") / "reference.jsonl"
        code, stderr = run_to_end(processes, command(output))
        assert code == 0, stderr
        records = read_records(output)
        assert [r["id"] for r in records] == [f"doc_{i:02d}.txt" for i in range(N_DOCS)]
        assert all("error" not in r and len(r["answers"]) == 2 for r in records)
        assert summary_count(stderr, "resumed (already done)") == 0
        _reference_cache["records"] = records
        _reference_cache["lines"] = output.read_bytes().splitlines(keepends=True)
    return _reference_cache["records"]


@pytest.fixture()
def reference_lines(reference, _reference_cache) -> list[bytes]:
    return _reference_cache["lines"]


def kill_after_some_records(start, args: list[str], output: Path) -> list[dict]:
    proc = start_slowly(start, args, output)
    proc.send_signal(signal.SIGKILL)
    assert finish(proc) == -signal.SIGKILL
    return complete_records(output)


def test_a_killed_run_resumes_to_the_reference_output(command, processes, reference, tmp_path):
    output = tmp_path / "answers.jsonl"
    done = kill_after_some_records(processes, command(output), output)
    assert MIN_LINES <= len(done) < N_DOCS
    assert_prefix_of_reference(done, reference)

    code, stderr = run_to_end(processes, command(output))
    assert code == 0, stderr
    assert_same_records(read_records(output), reference)
    assert summary_count(stderr, "resumed (already done)") == len(done)
    assert summary_count(stderr, "documents") == N_DOCS - len(done)


def test_a_torn_last_line_is_cut_off_and_its_document_rewritten(command, processes, reference,
                                                                 reference_lines, tmp_path):
    output = tmp_path / "answers.jsonl"
    done = kill_after_some_records(processes, command(output), output)
    data = output.read_bytes()
    output.write_bytes(data[:data.rfind(b"\n") + 1])  # drop a torn line the kill itself may have left
    # Half of the next record, ending inside a multi-byte character, as a write cut short leaves it.
    next_line = reference_lines[len(done)]
    with open(output, "ab") as out:
        out.write(next_line[:len(next_line) // 2] + "é".encode("utf-8")[:1])

    code, stderr = run_to_end(processes, command(output))
    assert code == 0, stderr
    assert_same_records(read_records(output), reference)
    assert summary_count(stderr, "resumed (already done)") == len(done)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_an_interrupted_run_exits_130_and_resumes(signum, command, processes, reference, tmp_path):
    output = tmp_path / "answers.jsonl"
    proc = start_slowly(processes, command(output), output)
    proc.send_signal(signum)
    code = finish(proc)
    stderr = stderr_of(proc)
    assert code == 130, stderr
    assert "Traceback" not in stderr
    assert "resume" in stderr.lower()
    match = re.search(r"Interrupted after (\d+) documents", stderr)
    assert match, stderr
    done = read_records(output)  # no torn line: the run stopped between records
    assert MIN_LINES <= len(done) < N_DOCS
    assert_prefix_of_reference(done, reference)
    assert len(done) - 1 <= int(match.group(1)) <= len(done)  # the signal may land between write and count

    code, stderr = run_to_end(processes, command(output))
    assert code == 0, stderr
    assert_same_records(read_records(output), reference)
    assert summary_count(stderr, "resumed (already done)") == len(done)


def test_overwrite_starts_the_output_afresh(command, processes, reference, reference_lines, tmp_path):
    output = tmp_path / "answers.jsonl"
    bogus = json.dumps({"id": "bogus.txt", "answers": [], "entities": []}) + "\n"
    output.write_bytes(bogus.encode("utf-8") + b"".join(reference_lines))

    code, stderr = run_to_end(processes, command(output, "--overwrite"))
    assert code == 0, stderr
    assert_same_records(read_records(output), reference)
    assert summary_count(stderr, "resumed (already done)") == 0
    assert summary_count(stderr, "documents") == N_DOCS


def test_rerunning_a_finished_run_changes_nothing(command, processes, reference, reference_lines, tmp_path):
    output = tmp_path / "answers.jsonl"
    output.write_bytes(b"".join(reference_lines))

    code, stderr = run_to_end(processes, command(output))
    assert code == 0, stderr
    assert output.read_bytes() == b"".join(reference_lines)
    assert summary_count(stderr, "resumed (already done)") == N_DOCS
    assert summary_count(stderr, "documents") == 0
