"""JsonlWriter, and reading, locking and rewriting an existing output."""

import errno
import json
import os
import tracemalloc
from pathlib import Path

import pytest

from nlpipe.errors import InputError
from nlpipe.io.writers import JsonlWriter, OutputLock, digest, drop_lines, lock_path, scan_output


def test_writer_writes_one_line_per_record_and_flushes(tmp_path):
    target = tmp_path / "nested" / "out.jsonl"
    records = [{"id": "a", "text": "Grüße"}, {"id": "b", "answers": [{"text": "x\ny"}]}]
    with JsonlWriter(str(target)) as writer:
        writer.write(records[0])
        # flushed: readable before the writer closes
        assert target.read_text(encoding="utf-8") == '{"id": "a", "text": "Grüße"}\n'
        writer.write(records[1])
        lines = target.read_text(encoding="utf-8").splitlines()
        assert [json.loads(line) for line in lines] == records
    assert target.read_text(encoding="utf-8").count("\n") == 2
    assert writer._stream.closed


def test_writer_overwrites(tmp_path):
    target = tmp_path / "out.jsonl"
    target.write_text("old\nold\n")
    with JsonlWriter(str(target)) as writer:
        writer.write({"id": 1})
    assert target.read_text() == '{"id": 1}\n'


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_write_that_fails_names_its_output():
    # What the CLI then says depends on what the output is: a full disk, or a device such as this.
    with pytest.raises(OSError) as caught:
        with JsonlWriter("/dev/full") as writer:
            writer.write({"id": "a"})
    assert (caught.value.errno, caught.value.filename) == (errno.ENOSPC, "/dev/full")


def test_writer_to_stdout(capsys):
    import sys

    with JsonlWriter("-") as writer:
        writer.write({"id": "s"})
    assert capsys.readouterr().out == '{"id": "s"}\n'
    assert not sys.stdout.closed


# --- reading an existing output ---------------------------------------------------------------

def record_line(doc_id: str, input_fp: str = "i", config: str = "c", **extra) -> bytes:
    record = {"id": doc_id, **extra, "fingerprint": {"input": input_fp, "config": config}}
    return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")


def test_scan_of_a_missing_output_is_empty(tmp_path):
    index = scan_output(str(tmp_path / "none.jsonl"))
    assert index.count == 0 and index.config is None and index.complete_bytes == 0


def test_scan_indexes_records_by_id_with_offsets(tmp_path):
    lines = [record_line("a", "1"), record_line("b", "2", error={"type": "x", "message": "y"}),
             record_line("a", "3", config="c2")]
    path = tmp_path / "out.jsonl"
    path.write_bytes(b"".join(lines))
    index = scan_output(str(path))
    a, b = index.positions("a"), index.positions("b")
    assert (len(a), len(b), len(index.positions("c"))) == (2, 1, 0)
    assert list(index.offsets[a]) == [0, len(lines[0]) + len(lines[1])]  # in file order
    assert list(index.inputs[a]) == [digest("a", "1"), digest("a", "3")] and list(index.failed[a]) == [False, False]
    assert (index.offsets[b[0]], index.inputs[b[0]], index.failed[b[0]]) == (len(lines[0]), digest("b", "2"), True)
    assert (index.count, index.config, index.complete_bytes) == (3, "c2", path.stat().st_size)


@pytest.mark.parametrize("torn", [b'{"id": "b", "entities": [{"te', b'{"id": "b\xc3', b'{"i'],
                         ids=["mid-record", "mid-char", "mid-opening"])
def test_a_torn_last_line_is_noted_not_cut(torn, tmp_path):
    path = tmp_path / "out.jsonl"
    data = record_line("a") + torn
    path.write_bytes(data)
    index = scan_output(str(path))
    assert index.count == 1 and index.complete_bytes == len(record_line("a"))
    assert path.read_bytes() == data


def test_a_last_record_without_its_newline_is_unfinished(tmp_path):
    """Valid JSON, but its newline never reached the disk: appending after it would glue the
    next record onto its line, so it is noted like a torn line and its document redone."""
    path = tmp_path / "out.jsonl"
    data = record_line("a") + record_line("b")[:-1]
    path.write_bytes(data)
    index = scan_output(str(path))
    assert index.count == 1 and len(index.positions("a")) == 1 and index.complete_bytes == len(record_line("a"))
    assert path.read_bytes() == data


def test_a_torn_only_line_is_a_torn_record(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"id": "a", "ans')
    assert scan_output(str(path)).complete_bytes == 0


@pytest.mark.parametrize("bad", [b"{broken\n", b"\n", b'{"id": "b"}\n', b'["id"]\n', b'{"id": 5}\n',
                                 b'{"text": "no newline, not ours"}'],
                         ids=["not-json", "blank", "no-fingerprint", "not-an-object", "id-not-a-string",
                              "last-line-not-torn"])
def test_any_other_bad_line_is_E040_naming_it(bad, tmp_path):
    path = tmp_path / "out.jsonl"
    data = record_line("a") + bad + (record_line("c") if bad.endswith(b"\n") else b"")
    path.write_bytes(data)
    with pytest.raises(InputError, match=r"E040: line 2 of the output '.*out.jsonl'"):
        scan_output(str(path))
    assert path.read_bytes() == data


@pytest.mark.parametrize("first", [b"# My notes\n", b'{"text": "no id"}\n', b"plain text, no newline"])
def test_a_first_line_that_is_not_ours_is_E041(first, tmp_path):
    path = tmp_path / "notes.md"
    path.write_bytes(first + record_line("a"))
    with pytest.raises(InputError, match="E041.*line 1"):
        scan_output(str(path))


def test_scan_streams_the_output(tmp_path):
    """Peak memory follows the longest line, not the file: 400 records of 50 kB are 20 MB."""
    path = tmp_path / "big.jsonl"
    with open(path, "wb") as out:
        for i in range(400):
            out.write(record_line(f"doc{i}", entities=["x" * 50_000]))
    tracemalloc.start()
    index = scan_output(str(path))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert index.count == 400
    assert peak < 2_000_000, peak


# --- writing ----------------------------------------------------------------------------------

def test_writer_creates_the_file_only_with_its_first_record(tmp_path):
    target = tmp_path / "new" / "out.jsonl"
    with JsonlWriter(str(target)):
        pass
    assert not target.parent.exists()


def test_writer_appends_after_the_complete_lines_cutting_a_torn_one(tmp_path):
    target = tmp_path / "out.jsonl"
    target.write_bytes(record_line("a") + b'{"id": "b", "ent')
    with JsonlWriter(str(target), append_at=len(record_line("a"))) as writer:
        writer.write({"id": "b"})
    assert target.read_bytes() == record_line("a") + b'{"id": "b"}\n'


def test_writer_replace_keeps_the_old_file_until_the_first_record(tmp_path):
    target = tmp_path / "out.jsonl"
    target.write_bytes(b"old\n")
    with JsonlWriter(str(target), replace=True) as writer:
        assert target.read_bytes() == b"old\n"
        writer.write({"id": "a"})
        assert target.read_bytes() == b'{"id": "a"}\n'
        writer.write({"id": "b"})
    assert target.read_bytes() == b'{"id": "a"}\n{"id": "b"}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_drop_lines_removes_exactly_the_lines_at_the_offsets(tmp_path):
    target = tmp_path / "out.jsonl"
    lines = [record_line("a"), record_line("b"), record_line("c")]
    target.write_bytes(b"".join(lines))
    drop_lines(str(target), [len(lines[0])])
    assert target.read_bytes() == lines[0] + lines[2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_the_output_lock_is_exclusive_and_removed_on_release(tmp_path):
    output = str(tmp_path / "out.jsonl")
    with OutputLock(output):
        assert lock_path(output).exists()
        with pytest.raises(InputError, match=r"E043: another nlpipe run is writing '.*out.jsonl'"):
            with OutputLock(output):
                pass
    assert not lock_path(output).exists()
    with OutputLock(output):  # free again
        pass


def test_a_lock_file_replaced_after_opening_is_locked_again(tmp_path, monkeypatch):
    """The holder removes the lock file as it releases; a run that opened the old file then
    must not take a lock on a file no one else can see."""
    output = str(tmp_path / "out.jsonl")
    lock = OutputLock(output)
    checks = iter([False, True])
    monkeypatch.setattr(lock, "_still_at_path", lambda fd: next(checks))
    with lock:
        assert next(checks, "used both") == "used both"


@pytest.mark.parametrize("link", [os.symlink, os.link], ids=["symlink", "hard-link"])
def test_the_output_lock_holds_for_every_name_of_the_file(link, tmp_path):
    output, alias = tmp_path / "out.jsonl", tmp_path / "alias.jsonl"
    output.write_bytes(record_line("a"))
    link(output, alias)
    with OutputLock(str(output)):
        with pytest.raises(InputError, match="E043"):
            with OutputLock(str(alias)):
                pass
    with OutputLock(str(alias)):  # free again
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alias.jsonl", "out.jsonl"]


@pytest.mark.parametrize("theirs", ["a-file", "a-link", "a-folder"])
def test_what_is_at_the_lock_path_and_not_a_lock_of_ours_is_refused_untouched(theirs, tmp_path):
    output, kept = tmp_path / "out.jsonl", tmp_path / "Cargo.lock"
    kept.write_text("my lockfile\n", encoding="utf-8")
    at_lock = lock_path(str(output))
    if theirs == "a-file":
        at_lock.write_text("mine\n", encoding="utf-8")
    elif theirs == "a-link":
        at_lock.symlink_to(kept)  # following it would lock, and on release remove, the user's file
    else:
        at_lock.mkdir()
    with pytest.raises(InputError, match=r"E049: '.*\.out\.jsonl\.nlpipe-lock', where a run on '.*out\.jsonl'"):
        with OutputLock(str(output)):
            pass
    assert kept.read_text(encoding="utf-8") == "my lockfile\n"
    assert at_lock.is_symlink() if theirs == "a-link" else at_lock.exists()
    if theirs == "a-file":
        assert at_lock.read_text(encoding="utf-8") == "mine\n"
