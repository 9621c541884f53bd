"""Write a run's JSON records (records.doc_record) one line at a time, never destroying a file.

An output is only ever changed under an exclusive lock, after every line of it was read as a
record of ours; anything else stops the run before a byte is touched.
"""

import errno
import fcntl
import hashlib
import io
import json
import os
import stat
import sys
from array import array
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import Errors, InputError

# What a lock file of ours holds: how a lock a killed run left (taken over) is told from a file of
# the user's that happens to have its name (refused, never changed or removed).
LOCK_MARK = b"nlpipe output lock: held by the run writing the output beside it\n"
# A record's own line starts so (json.dumps with "id" first): how a torn last line is recognised.
RECORD_START = b'{"id": '


def digest(*parts: str) -> int:
    """An 8-byte hash of strings, as a signed int (what an int64 array holds): how the output index
    keeps ids and fingerprints in a few bytes each, whatever their length."""
    hashed = hashlib.blake2b(digest_size=8)
    for part in parts:
        data = part.encode("utf-8", "surrogatepass")  # a JSON id may hold a lone surrogate
        hashed.update(len(data).to_bytes(8, "little") + data)  # length first: parts never run together
    return int.from_bytes(hashed.digest(), "little", signed=True)


def _no_records(dtype=np.int64):
    return field(default_factory=lambda: np.empty(0, dtype))


@dataclass
class OutputIndex:
    """What an existing output holds, read line by line (never the whole file at once).

    Per record, in arrays sorted by id digest (file order within an id): the digest of its id,
    the digest of its id with its input fingerprint, where its line starts and whether it failed.
    About 25 bytes a record (twice that while they are sorted), whatever it holds: 9 million
    records take 230 MB, not the 4 GB that strings and objects per record took. Two ids sharing a
    digest only cost work, never a record: a document matches a record only if its id and input
    digest both agree.
    """

    ids: np.ndarray = _no_records()
    inputs: np.ndarray = _no_records()
    offsets: np.ndarray = _no_records()
    failed: np.ndarray = _no_records(np.bool_)
    config: str | None = None  # config fingerprint of the last record
    complete_bytes: int = 0  # where an unfinished last line starts (the file size when there is none)

    @property
    def count(self) -> int:
        return len(self.ids)

    def positions(self, doc_id: str) -> range:
        """Where the records of `doc_id` are in the arrays (empty when there are none)."""
        key = digest(doc_id)
        return range(int(self.ids.searchsorted(key, "left")), int(self.ids.searchsorted(key, "right")))


def _fingerprint_of(line: bytes) -> tuple[str, dict]:
    """(id, fingerprint) of one of our records; ValueError saying why otherwise."""
    try:
        record = json.loads(line)
    except (ValueError, RecursionError) as err:
        raise ValueError(f"not JSON ({err})") from None
    if not isinstance(record, dict) or not isinstance(record.get("id"), str):
        raise ValueError("not a JSON object with a string \"id\"")
    fingerprint = record.get("fingerprint")
    if not isinstance(fingerprint, dict) or not all(isinstance(fingerprint.get(k), str) for k in ("input", "config")):
        raise ValueError("no \"fingerprint\" (written by another program or an older nlpipe)")
    return record["id"], {**fingerprint, "failed": "error" in record}


def _torn(line: bytes) -> bool:
    """A record of ours cut short: no newline, our opening (or as much of it as was written), and
    not (yet) valid JSON. A full disk can cut a line after any byte, even inside the opening."""
    if line.endswith(b"\n") or not (line.startswith(RECORD_START) or RECORD_START.startswith(line)):
        return False
    try:
        json.loads(line)
    except ValueError:
        return True
    return False


def scan_output(path: str) -> OutputIndex:
    """Index the records of the JSONL output `path` (empty if there is none).

    Only an unfinished last line is tolerated: a torn record (no newline, as a killed write or a
    full disk leaves it), or a whole record of ours whose newline never reached the disk. It is
    noted in `complete_bytes`, not cut here, and its document is redone. Any other line that is
    not one of our records raises E040, and a first line that is not ours E041: the file is left
    as it is.
    """
    index = OutputIndex()
    if not Path(path).is_file():
        return index
    # Growing arrays of machine ints while reading: a Python object per record would take ten times more.
    ids, inputs, offsets, failed = array("q"), array("q"), array("q"), bytearray()
    with open(path, "rb") as stream:
        for number, line in enumerate(iter(stream.readline, b""), start=1):
            if _torn(line):
                break  # a kill mid-write: the resumed run rewrites that document
            try:
                doc_id, fingerprint = _fingerprint_of(line)
            except ValueError as err:
                message = Errors.E041 if number == 1 else Errors.E040
                raise InputError(message.format(path=path, line=number, reason=err)) from None
            if not line.endswith(b"\n"):
                break  # its newline was never written: appending after it would glue the next record on
            ids.append(digest(doc_id))
            inputs.append(digest(doc_id, fingerprint["input"]))
            offsets.append(index.complete_bytes)
            failed.append(fingerprint["failed"])
            index.config = fingerprint["config"]
            index.complete_bytes += len(line)
    order = np.argsort(np.frombuffer(ids, np.int64), kind="stable")  # stable: file order within an id
    index.ids, index.inputs, index.offsets = (np.frombuffer(column, np.int64)[order]
                                              for column in (ids, inputs, offsets))
    index.failed = np.frombuffer(failed, np.bool_)[order]
    return index


def real_path(output: str) -> str:
    """The file `output` names, through any symbolic links ("-", stdout, stays as it is)."""
    return output if output == "-" else os.path.realpath(output)


def lock_path(output: str) -> Path:
    """The lock file of `output`: hidden beside the real file, named so that no user's file is."""
    path = Path(real_path(output))
    return path.with_name(f".{path.name}.nlpipe-lock")


class OutputLock:
    """An exclusive lock on an output, so that two runs never write one file, whatever its name.

    It is an flock on `lock_path(output)`, named after the real file, so that a symbolic link to
    it is locked by the same file. With `in_place` (a run that reads and appends to the output,
    not one that replaces it), the existing output itself is flocked too, which is what its hard
    links share. The lock file is removed on release; a run that finds the file it locked
    already replaced by another run's locks again, so two runs can never both believe they hold it.
    A file at the lock path that is not a lock file of ours is refused (E049) as it is.
    """

    def __init__(self, output: str, in_place: bool = True):
        self.output = output
        self.file = real_path(output)  # what is locked, whichever of its names `output` is
        self.path = str(lock_path(self.file))
        self.in_place = in_place
        self._fd = None
        self._output_fd = None

    def __enter__(self) -> "OutputLock":
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._fd = self._lock_file()
        try:
            self._output_fd = self._lock_output() if self.in_place else None
        except BaseException:
            self.__exit__()
            raise
        return self

    def _lock_file(self) -> int:
        while True:
            fd = self._open_lock_file()
            self._flock(fd, self.path)
            if self._still_at_path(fd):
                self._claim(fd)
                return fd
            os.close(fd)  # released and removed by its holder between our open and our lock

    def _open_lock_file(self) -> int:
        try:
            # O_NOFOLLOW: a link at the lock path would lead to a file that is not ours to remove.
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as err:
            if err.errno in (errno.ELOOP, errno.EISDIR):
                raise self._not_ours() from None
            raise

    def _claim(self, fd: int) -> None:
        """Mark the locked file as ours, unless it holds anything else: then it is a user's file."""
        is_file = stat.S_ISREG(os.fstat(fd).st_mode)
        held = os.pread(fd, len(LOCK_MARK) + 1, 0) if is_file else None
        # Empty: just created, by this run or by one that this run beat to the flock.
        if held not in (b"", LOCK_MARK):
            os.close(fd)
            raise self._not_ours()
        if not held:
            os.write(fd, LOCK_MARK)

    def _not_ours(self) -> InputError:
        return InputError(Errors.E049.format(path=self.output, lock=self.path))

    def _lock_output(self) -> int | None:
        """The output's own flock: another name of the file (a hard link) has another lock file.
        Not held by a run that only replaces the output, which would keep the old file's disk
        space taken until the end of the run."""
        try:
            # O_NONBLOCK: opening a FIFO (refused later, as no regular file) must not wait for a writer.
            fd = os.open(self.file, os.O_RDONLY | os.O_NONBLOCK)
        except (FileNotFoundError, PermissionError):
            return None  # created by this run under its lock file, or not ours to read
        self._flock(fd, self.file)
        return fd

    def _flock(self, fd: int, held: str) -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise InputError(Errors.E043.format(path=self.output, lock=held)) from None

    def _still_at_path(self, fd: int) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def __exit__(self, *exc) -> None:
        os.unlink(self.path)
        os.close(self._fd)
        if self._output_fd is not None:
            os.close(self._output_fd)


def temporary_path(output: str) -> Path:
    """Where a new version of `output` is written before it replaces the old one."""
    path = Path(output)
    return path.with_name(f".{path.name}.nlpipe-tmp")


class JsonlWriter:
    """Writes one JSON line per record and flushes it, so a crash loses at most the line in flight.

    The file is opened at the first record, so a run that writes nothing creates nothing.
    `append_at` continues an existing file after its first `append_at` bytes (resume; a torn
    last line beyond them is cut); `replace` writes a temporary file that replaces the target
    once its first record is on disk, so the old file survives a run that fails before that.
    Otherwise the file starts empty. `target` is a real file, not a link (see `real_path`): a
    link would be replaced by the new file, cut from its target.
    """

    def __init__(self, target: str, append_at: int | None = None, replace: bool = False):
        self.target = target
        self.append_at = append_at
        self.replace = replace
        self._stream = None

    def __enter__(self) -> "JsonlWriter":
        if self.target == "-":
            self._stream = sys.stdout
        return self

    def _open(self):
        path = temporary_path(self.target) if self.replace else Path(self.target)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if self.append_at is None:
                return open(path, "w", encoding="utf-8", newline="\n")
            raw = open(path, "r+b")
            raw.truncate(self.append_at)
            raw.seek(self.append_at)
            return io.TextIOWrapper(raw, encoding="utf-8", newline="\n")
        except OSError as err:
            raise InputError(Errors.E023.format(path=self.target, reason=err.strerror or err)) from None

    def write(self, record: dict) -> None:
        first = self._stream is None
        if first:
            self._stream = self._open()
        with self._naming_the_output():
            self._stream.write(json.dumps(record, ensure_ascii=False) + "\n")
            self._stream.flush()
        if first and self.replace:
            os.fsync(self._stream.fileno())
            os.replace(temporary_path(self.target), self.target)

    def __exit__(self, *exc) -> None:
        if self._stream is not None and self._stream is not sys.stdout:
            with self._naming_the_output():  # closing flushes what a failed write left
                self._stream.close()

    @contextmanager
    def _naming_the_output(self):
        """An OSError of a write names the output (its filename): what the CLI says of it depends on
        what the output is (a full disk, or a device such as /dev/full)."""
        try:
            yield
        except OSError as err:
            if err.filename is not None:
                raise
            raise OSError(err.errno, err.strerror, self.target) from err


def drop_lines(path: str, offsets: Iterable[int]) -> None:
    """Rewrite `path` (a real file, not a link) without the lines that start at `offsets` (in
    ascending order: walked beside the file, never held as a set), replacing it in one step."""
    temporary = temporary_path(path)
    to_drop = iter(offsets)
    next_drop = next(to_drop, None)
    with open(path, "rb") as source, open(temporary, "wb") as target:
        offset = 0
        for line in iter(source.readline, b""):
            if offset == next_drop:
                next_drop = next(to_drop, None)
            else:
                target.write(line)
            offset += len(line)
        target.flush()
        os.fsync(target.fileno())
    os.replace(temporary, path)
