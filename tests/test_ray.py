"""The Ray engine: the same records as the local engine, resumable, surviving a killed actor, never hanging.

Runs with Ray share one local Ray of 2 CPUs (this machine's size, where the pool-sizing rule
matters most) started once for the module; each run builds its own actor pool. They use the
tiny random Llama, over a folder of N_DOCS files (two of them bad) read by Ray's read tasks,
each asked one question.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from nlpipe.cli import main
from nlpipe.config import JobSettings, build_pipeline, job_settings, load_config
from nlpipe.distributed.ray_engine import (READ_CPUS, RESERVED_CPUS, PipelineWorker, block_plan, check_ray_address,
                                          pool_shape, RayEngine, ray_session, windows, worker_args as actor_args)
from nlpipe.distributed.reading import read_files
from nlpipe.errors import ConfigError, EngineError
from nlpipe.runner import run
from tests.conftest import fake_overrides, qa_overrides_for
from tests.test_resume import document_text

REPO = Path(__file__).resolve().parents[1]
QA_CFG = str(REPO / "pipelines" / "qa.cfg")
N_DOCS = 50
BATCH = 5
RUN_TIMEOUT = 150  # seconds: far above a run's time here, so only a hang reaches it
ACTOR_TITLE = b"ray::MapWorker(MapBatches(PipelineWorker))"


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def by_id(records: list[dict]) -> list[dict]:
    return sorted(records, key=lambda r: r["id"])


# Fast: sizing, settings, and what a user without Ray sees.

@pytest.mark.parametrize("cpus, workers", [(2, 2), (2, 1), (2, 7), (1, 1), (64, 8)])
def test_actors_never_claim_the_cpus_ray_data_needs_for_itself(cpus, workers):
    shape = pool_shape(JobSettings(workers=workers), {"CPU": cpus})
    assert shape.workers == workers
    assert 0 < shape.cpus <= 1.0
    assert shape.workers * shape.cpus <= cpus - RESERVED_CPUS <= cpus - 2 * READ_CPUS  # two read tasks fit
    assert 1 <= shape.threads <= max(1, cpus // workers)


def test_default_pool_is_whole_cpus_left_or_one_actor_per_gpu_share():
    assert pool_shape(JobSettings(), {"CPU": 2}) == (1, 1.0, 2)  # one actor, with both cores' threads
    assert pool_shape(JobSettings(), {"CPU": 8})[0] == 7
    assert pool_shape(JobSettings(gpus_per_worker=1), {"CPU": 16, "GPU": 4})[0] == 4
    assert pool_shape(JobSettings(gpus_per_worker=0.5), {"CPU": 16, "GPU": 4})[0] == 8


def test_more_gpus_than_the_cluster_has_is_E072():
    with pytest.raises(EngineError, match="E072"):
        pool_shape(JobSettings(workers=3, gpus_per_worker=1), {"CPU": 8, "GPU": 2})


@pytest.mark.parametrize("key, value", [("engine", "spark"), ("workers", 0), ("gpus_per_worker", -1),
                                        ("workers", "two")])
def test_bad_engine_settings_are_E002(key, value):
    config = load_config(QA_CFG, {f"nlpipe.{key}": value})
    with pytest.raises(ConfigError, match=f"E002.*{key}"):
        job_settings(config)


@pytest.mark.parametrize("engine_option", [["--engine", "ray"], ["--nlpipe.engine", "ray"]])
def test_engine_ray_without_ray_installed_exits_2_saying_what_to_install(engine_option, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if it were not installed
    monkeypatch.setenv("COLUMNS", "1000")  # not on a terminal, rich wraps at 80 columns
    (tmp_path / "doc.txt").write_text("Paris is in France.", encoding="utf-8")
    result = CliRunner().invoke(main, ["run", QA_CFG, "--input", str(tmp_path / "doc.txt"), "--output",
                                       str(tmp_path / "out.jsonl"), *engine_option])
    assert result.exit_code == 2, result.output
    [line] = [line for line in result.output.splitlines() if "error" in line]
    assert "E070" in line and 'pip install "ray[data]>=2.40"' in line
    assert "Traceback" not in result.output
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize("address", ["127.0.0.1:99999", "127.0.0.1:0", "127.0.0.1", "head:port", ":6379"])
def test_a_ray_address_that_is_not_host_and_port_is_E074(address):
    with pytest.raises(EngineError, match=f"E074: the Ray address '{address}' is not HOST:PORT"):
        check_ray_address(address)


@pytest.mark.parametrize("address", [None, "auto", "local", "ray://127.0.0.1:1"])
def test_addresses_ray_resolves_itself_are_left_to_it(address, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    check_ray_address(address)  # no error, no connection: a new local Ray, `ray start`'s, a Ray client


@pytest.fixture()
def closed_port() -> int:
    """A local port that refuses connections: bound, never listening (and so never taken by another)."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


@pytest.mark.parametrize("via", ["--ray-address", "RAY_ADDRESS"])
def test_a_ray_address_nothing_answers_at_exits_2_at_once_saying_to_start_a_head(via, closed_port, monkeypatch,
                                                                                tmp_path):
    import ray

    def retry_for_minutes(*args, **kwargs):  # what ray.init did with such an address
        raise AssertionError("ray.init was reached")
    monkeypatch.setattr(ray, "init", retry_for_minutes)
    monkeypatch.setenv("COLUMNS", "1000")  # rich's console width
    address = f"127.0.0.1:{closed_port}"
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    if via == "RAY_ADDRESS":
        monkeypatch.setenv("RAY_ADDRESS", address)
    (tmp_path / "doc.txt").write_text("Paris is in France.", encoding="utf-8")
    (tmp_path / "questions.txt").write_text("Where is Paris?\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["run", QA_CFG, "--input", str(tmp_path / "doc.txt"), "--questions",
                                       str(tmp_path / "questions.txt"), "--output", str(tmp_path / "out.jsonl"),
                                       "--engine", "ray", *([via, address] if via == "--ray-address" else [])])
    assert result.exit_code == 2, result.output
    [line] = [line for line in result.output.splitlines() if "error" in line]
    assert f"E075: nothing answers at the Ray address {address} (Connection refused)" in line
    assert "`ray start --head` runs there" in line
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize("name", ["qa", "annotate"])
def test_a_builtin_pipeline_name_reaches_the_actors_as_a_config_they_can_load(name, tmp_path, monkeypatch):
    # Made an absolute path (CWD/qa), a built-in name was E001 in every actor.
    monkeypatch.chdir(tmp_path)
    config_path = actor_args(name, {}, JobSettings())["config_path"]
    assert load_config(config_path) == load_config(name)


def test_a_config_file_reaches_the_actors_by_its_absolute_path(tmp_path, monkeypatch):
    (tmp_path / "mine.cfg").write_text(Path(QA_CFG).read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    config_path = actor_args("mine.cfg", {}, JobSettings())["config_path"]
    monkeypatch.chdir(REPO)  # an actor's working directory need not be the driver's
    assert config_path == str(tmp_path / "mine.cfg")
    assert load_config(config_path) == load_config(QA_CFG)


@pytest.mark.parametrize("documents, batch_size", [(50, 5), (540, 64), (1, 32), (65, 64), (10_000, 32), (31, 32)])
def test_each_block_is_one_batch_of_at_most_batch_size(documents, batch_size):
    blocks, rows = block_plan(documents, batch_size)
    assert rows <= batch_size
    # Ray splits `documents` rows evenly over `blocks`: every block fits one batch, none is empty.
    assert -(-documents // blocks) == rows and (blocks - 1) * rows < documents


def test_windows_keep_order_and_their_size_limit():
    items = ["a" * n for n in (3, 4, 2, 9, 1, 1, 5)]
    out = list(windows(iter(items), max_bytes=8))
    assert [x for window in out for x in window] == items
    # A window closes before the item that would take it over the limit; a lone oversized item
    # (the 9) still travels, alone.
    assert [[len(x) for x in window] for window in out] == [[3, 4], [2], [9], [1, 1, 5]]
    assert list(windows(iter([]), max_bytes=8)) == []


def test_the_read_stage_imports_no_pipeline_dependencies():
    # A read task's worker process imports this module alone; spaCy (and torch through thinc)
    # would cost it seconds of CPU beside the actors starting up.
    code = "import sys, nlpipe.distributed.reading; print(sorted({'spacy', 'torch', 'ray'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


def test_the_read_stage_reads_unread_files_and_passes_the_others(tmp_path):
    (tmp_path / "good.txt").write_text("Paris is in France.", encoding="utf-8")
    (tmp_path / "binary.txt").write_bytes(b"\x00\x01 not text")
    rows = [[{"id": "good.txt", "text": None, "path": str(tmp_path / "good.txt")}, ["Q?"], [None, None]],
            [{"id": "binary.txt", "text": None, "path": str(tmp_path / "binary.txt")}, [], [None, 7]],
            [{"id": "line:1", "text": "Read by the driver."}, [], ["f", None]]]
    rows = [[{"questions": [], "error": None, "warning": None, "path": None, **d}, q, t] for d, q, t in rows]
    out = read_files({"item": [json.dumps(row) for row in rows]}, max_chars=1000)
    good, binary, line = map(json.loads, out["item"])
    assert good == [{"id": "good.txt", "text": "Paris is in France.", "questions": [], "error": None,
                     "warning": None, "path": None}, ["Q?"], [None, None]]
    assert binary[0]["error"]["type"] == "binary_file" and binary[2] == [None, 7]  # as a local run reads it
    assert line == rows[2]


# Slow: the actor class in this process, then real Ray runs.

@pytest.fixture()
def worker_args(qa_overrides):
    return {"config_path": QA_CFG, "overrides": qa_overrides, "settings": JobSettings(batch_size=BATCH),
            "cwd": os.getcwd()}


def batch_of(*documents: dict, asked=("Where is it?",)) -> dict:
    """Rows as the read stage sends them: [document, its questions (its own, then the run's), tag]."""
    documents = [{"questions": [], "error": None, "warning": None, "path": None, **d} for d in documents]
    return {"item": [json.dumps([d, [*d["questions"], *asked], [f"tag-{d['id']}", None]]) for d in documents]}


def records_of(out: dict) -> list[dict]:
    results = [json.loads(line) for line in out["result"]]
    assert all(tag == [f"tag-{record['id']}", None] for record, tag in results)  # tags come back with records
    return [record for record, _ in results]


@pytest.mark.slow
def test_an_actor_runs_batches_in_memory_zones(worker_args):
    worker = PipelineWorker(**worker_args)
    nlp = worker.nlp
    worker(batch_of({"id": "warm-up", "text": "Paris is in France."}))
    before = len(nlp.vocab.strings)
    out = worker(batch_of(*({"id": f"d{i}", "text": f"Zorblax{i} met Quimby{i} in Vlatislav{i}."}
                            for i in range(10))))
    records = records_of(out)
    assert [r["id"] for r in records] == [f"d{i}" for i in range(10)]
    assert all(len(r["answers"]) == 1 for r in records)
    assert len(nlp.vocab.strings) == before  # the batch's new words were freed with its zone


@pytest.mark.slow
def test_a_document_that_breaks_the_pipeline_becomes_an_error_record_in_the_actor(worker_args):
    # A model that breaks on the poison document's prompts.
    worker = PipelineWorker(**{**worker_args, "overrides": fake_overrides(raises={"Rome.": "boom"})})
    out = worker(batch_of({"id": "a", "text": "Paris is in France."}, {"id": "poison", "text": "Rome."},
                          {"id": "b", "text": "Bern is in Switzerland.", "questions": ["Where is Bern?"]}))
    a, poison, b = records_of(out)
    assert poison == {"id": "poison", "error": {"type": "processing_failed", "message": "RuntimeError: boom"}}
    assert "error" not in a and "error" not in b
    assert [x["question"] for x in b["answers"]] == ["Where is Bern?", "Where is it?"]


@pytest.fixture(scope="module")
def local_ray():
    with ray_session(None, num_cpus=2) as ray:
        yield ray


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A folder of N_DOCS files, one of them binary and one empty, and a questions file beside it."""
    root = tmp_path_factory.mktemp("ray")
    folder = root / "docs"
    folder.mkdir()
    for i in range(N_DOCS - 2):
        (folder / f"doc-{i:02d}.txt").write_text(document_text(i), encoding="utf-8")
    (folder / "binary.txt").write_bytes(b"\x00\x01 not text")
    (folder / "empty.txt").write_text("  ", encoding="utf-8")
    (root / "questions.txt").write_text("When did it open?\n", encoding="utf-8")
    return folder


def corpus_settings(corpus: Path, output: Path, **settings) -> JobSettings:
    return JobSettings(input=str(corpus), output=str(output), questions=str(corpus.parent / "questions.txt"),
                       batch_size=BATCH, **settings)


@pytest.fixture(scope="module")
def reference(corpus, tiny_llama_dir, tmp_path_factory) -> list[dict]:
    """The local engine's records, sorted by id."""
    overrides = qa_overrides_for(tiny_llama_dir)
    output = tmp_path_factory.mktemp("local") / "out.jsonl"
    nlp = build_pipeline(load_config(QA_CFG, overrides))
    run(nlp, corpus_settings(corpus, output))
    return by_id(read_records(output))


@pytest.fixture()
def ray_run(local_ray, corpus, qa_overrides):
    """Runs the Ray engine over the corpus in a thread, failing the test if it does not end in RUN_TIMEOUT."""
    # The driver builds the pipeline too (its config fingerprint and checks), never loading weights.
    nlp = build_pipeline(load_config(QA_CFG, qa_overrides))

    def start(output: Path, on_record=lambda r, s: None, workers: int | None = 2):
        settings = corpus_settings(corpus, output, workers=workers)
        return bounded(lambda: run(nlp, settings, on_record, engine=RayEngine(QA_CFG, qa_overrides, settings)))
    return start


def bounded(function):
    """function() in a daemon thread (a hung one does not keep pytest from exiting): still
    running after RUN_TIMEOUT (a hang) fails the test; its exception is raised here."""
    outcome = {}

    def target():
        try:
            outcome["value"] = function()
        except BaseException as err:  # noqa: B036  handed to the test's thread
            outcome["error"] = err
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(RUN_TIMEOUT)
    if thread.is_alive():
        pytest.fail(f"the run did not end in {RUN_TIMEOUT} s: it hangs")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


@pytest.mark.slow
def test_two_actors_on_two_cpus_finish_with_the_local_engines_records(ray_run, local_ray, reference, tmp_path):
    # Actors that claim every CPU leave the read tasks waiting forever, and with them the whole
    # run: bounded, a hang fails at RUN_TIMEOUT (it did, with actors at 1 CPU each). The actors
    # leave the reserve to the read tasks (sampling free CPUs during the run would race with the
    # read tasks that use the reserve, so the claim is checked on the pool the run used).
    output = tmp_path / "out.jsonl"
    summary = ray_run(output)
    cpus = local_ray.cluster_resources()["CPU"]
    shape = pool_shape(JobSettings(workers=2), {"CPU": cpus})
    assert shape.workers * shape.cpus + RESERVED_CPUS <= cpus and 2 * READ_CPUS <= RESERVED_CPUS
    records = read_records(output)
    assert by_id(records) == reference
    assert (summary.documents, summary.failed) == (N_DOCS, 2)
    assert {r["error"]["type"] for r in records if "error" in r} == {"binary_file", "empty_document"}
    assert summary.questions == sum(len(r.get("answers") or []) for r in reference) > 0


def parent_pid(pid: int | str) -> int:
    # /proc/PID/stat: "pid (name) state ppid ..."; the name may hold spaces, so split after it.
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def actor_pids() -> list[int]:
    """This test's actors: their parent is the raylet this process started (never another Ray's)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if (entry.name.isdigit() and (entry / "cmdline").read_bytes().startswith(ACTOR_TITLE)
                    and parent_pid(parent_pid(entry.name)) == os.getpid()):
                pids.append(int(entry.name))
        except OSError:  # the process ended while we looked
            continue
    return pids


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds actor processes through /proc")
def test_a_killed_actor_is_restarted_and_no_document_is_lost_or_written_twice(ray_run, reference, tmp_path):
    output = tmp_path / "out.jsonl"
    killed = []

    def kill_an_actor(record, summary):
        if summary.documents == BATCH:  # the first batch is out: both actors are up and busy
            victim = actor_pids()[0]
            os.kill(victim, signal.SIGKILL)
            killed.append((victim, summary.documents))
    ray_run(output, kill_an_actor)
    assert killed and killed[0][1] < N_DOCS
    assert killed[0][0] not in actor_pids()
    records = read_records(output)
    assert len(records) == N_DOCS  # none twice...
    assert by_id(records) == reference  # ...none lost, each as the local engine writes it


@pytest.mark.slow
def test_a_pipeline_an_actor_cannot_build_is_one_user_error(local_ray, corpus, qa_overrides, tmp_path):
    overrides = {**qa_overrides, "components.llama_qa.model.path": str(tmp_path / "no-model")}
    settings = corpus_settings(corpus, tmp_path / "out.jsonl", workers=1)
    with pytest.raises(EngineError, match="E073.*E013"):
        bounded(lambda: run(build_pipeline(load_config(QA_CFG, overrides)), settings,
                            engine=RayEngine(QA_CFG, overrides, settings)))
    assert not (tmp_path / "out.jsonl").exists()  # created only with its first record


class Interrupt(Exception):
    """Stands for Ctrl-C, raised from the progress callback after a chosen number of records."""


@pytest.mark.slow
def test_an_interrupted_ray_run_resumes_without_loss_or_duplicates(ray_run, reference, tmp_path):
    # With the default pool, which must not hang on 2 CPUs either (one actor, at 1 CPU).
    output = tmp_path / "out.jsonl"
    stop_after = 2 * BATCH

    def interrupt(record, summary):
        if summary.documents == stop_after:
            raise Interrupt
    with pytest.raises(Interrupt):
        ray_run(output, interrupt, workers=None)
    done = read_records(output)
    assert len(done) == stop_after
    summary = ray_run(output, workers=None)
    assert summary.resumed == stop_after and summary.documents == N_DOCS - stop_after
    records = read_records(output)
    assert len(records) == N_DOCS and by_id(records) == reference


def cli_args(corpus: Path, output: Path, qa_overrides: dict) -> list[str]:
    """`nlpipe run` over the corpus on the Ray engine."""
    args = ["run", QA_CFG, "--input", str(corpus), "--output", str(output), "--questions",
            str(corpus.parent / "questions.txt"), "--batch-size", str(BATCH), "--engine", "ray"]
    for key, value in qa_overrides.items():
        args += [f"--{key}", json.dumps(value) if not isinstance(value, str) else value]
    return args


@pytest.mark.slow
def test_the_cli_shows_the_summary_of_a_local_run_for_a_ray_run(local_ray, corpus, qa_overrides, reference,
                                                                 tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # rich's console width
    output = tmp_path / "out.jsonl"
    args = [*cli_args(corpus, output, qa_overrides), "--workers", "2"]
    result = bounded(lambda: CliRunner().invoke(main, args, catch_exceptions=False))
    assert result.exit_code == 1, result.output  # 1: some documents failed, as in a local run
    rows = dict(re.findall(r"│ ([a-z/ ()]+?) +│ +(\S+) │", result.output))
    assert (rows["documents"], rows["failed"], rows["resumed (already done)"]) == (str(N_DOCS), "2", "0")
    assert by_id(read_records(output)) == reference


# The CLI (argv[2:]) with SIGTERM raised, as a scheduler stopping the job, when argv[1] records are
# written; {at_stop} runs just before.
SIGTERM_AFTER_RECORDS = """
import signal, sys
from nlpipe.cli import main
from nlpipe.io.writers import JsonlWriter

write, written = JsonlWriter.write, []

def write_or_stop(self, record):
    if len(written) == int(sys.argv[1]):
        {at_stop}
        signal.raise_signal(signal.SIGTERM)
    write(self, record)
    written.append(record)

JsonlWriter.write = write_or_stop
main(sys.argv[2:])
"""


def run_stopped(code: str, stop_after: int, args: list[str]) -> subprocess.CompletedProcess:
    """The CLI with `args`, run by `code` (SIGTERM_AFTER_RECORDS) stopping after `stop_after` records."""
    return subprocess.run([sys.executable, "-c", code, str(stop_after), *args], cwd=REPO,
                          env={**os.environ, "COLUMNS": "1000"}, capture_output=True, text=True, timeout=RUN_TIMEOUT)


@pytest.mark.slow
def test_sigterm_ends_a_ray_run_as_ctrl_c_does_saying_how_to_resume(local_ray, corpus, qa_overrides, tmp_path):
    # ray.init made SIGTERM exit 15 at once, with no word. The driver joins this module's Ray (ray.init
    # sets its handler when joining too), so no second Ray starts.
    output = tmp_path / "out.jsonl"
    stop_after = 2 * BATCH
    args = [*cli_args(corpus, output, qa_overrides), "--workers", "1",
            "--ray-address", local_ray.get_runtime_context().gcs_address]
    done = run_stopped(SIGTERM_AFTER_RECORDS.format(at_stop="pass"), stop_after, args)
    said = done.stdout + done.stderr
    assert done.returncode == 130, said  # as a local run: README's exit codes
    assert f"Interrupted after {stop_after} documents" in said and "Run the same command again to resume" in said
    assert "Traceback" not in said
    assert len(read_records(output)) == stop_after


# What Ray's driver prints of an error in the cluster, as it did of the tasks an interrupted run's
# stopped actors left unsent ("(raylet) Task MapWorker(...).submit failed ..."), whenever those came.
RAY_PRINTS_AN_ERROR = ("from ray._private.worker import print_to_stdstream; print_to_stdstream("
                       "{'lines': ['Task failed'], 'pid': 'raylet', 'is_err': False}, ignore_prefix=False)")


@pytest.mark.slow
def test_only_records_reach_stdout_when_an_interrupted_ray_run_writes_there(local_ray, corpus, qa_overrides):
    stop_after = 2 * BATCH
    args = [*cli_args(corpus, "-", qa_overrides), "--workers", "1",
            "--ray-address", local_ray.get_runtime_context().gcs_address]
    done = run_stopped(SIGTERM_AFTER_RECORDS.format(at_stop=RAY_PRINTS_AN_ERROR), stop_after, args)
    assert done.returncode == 130, done.stderr
    assert len([json.loads(line) for line in done.stdout.splitlines()]) == stop_after
    assert "(raylet)" in done.stderr and "Task failed" in done.stderr  # said, where diagnostics go


# A driver that starts a Ray of its own, says so, and waits to be killed.
OWN_RAY_DRIVER = f"""
import time
from nlpipe.distributed.ray_engine import ray_session

with ray_session(None, num_cpus=1):
    print("up", flush=True)
    time.sleep({RUN_TIMEOUT})
"""
# Ray's agents outlived a killed driver by 60 s (a timeout Ray hard-codes); the watchdog ends them at once.
LEFTOVER_SECONDS = 30


def running(processes: list) -> list:
    """Those of `processes` (psutil.Process) still running: a zombie has ended, only its exit status is left."""
    import psutil

    alive = []
    for process in processes:
        try:
            if process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.NoSuchProcess:
            continue
    return alive


@pytest.mark.slow
def test_nothing_of_the_ray_a_driver_started_outlives_its_kill_9():
    import psutil

    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    driver = subprocess.Popen([sys.executable, "-c", OWN_RAY_DRIVER], cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    started = []
    try:
        assert driver.stdout.readline() == "up\n"
        started = psutil.Process(driver.pid).children(recursive=True)
        assert any(process.name() == "raylet" for process in started)
        driver.kill()
        driver.wait()
        psutil.wait_procs(started, timeout=LEFTOVER_SECONDS)
        assert [process.cmdline() for process in running(started)] == []
    finally:
        driver.kill()
        for process in running(started):
            process.kill()
