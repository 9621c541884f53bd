"""Where nlpipe keeps files per user: converted models, shared by every working directory."""

import hashlib
import os
import sys
from pathlib import Path


def cache_root() -> Path:
    """$NLPIPE_CACHE, else nlpipe/ in the user's cache folder (as platformdirs' user_cache_dir)."""
    if os.environ.get("NLPIPE_CACHE"):
        return Path(os.environ["NLPIPE_CACHE"])
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "nlpipe"


def cache_dir(source: Path, kind: str, files: list[Path] | None = None) -> Path:
    """Where the converted copy of `source` (a file, or a folder's `files`) lives.

    The key is the path plus every file's size and mtime, so a changed file gets a new folder.
    """
    def stamp(path: Path) -> str:
        stat = path.stat()
        return f"{stat.st_size}:{stat.st_mtime_ns}"

    if source.is_file():
        stamps = [stamp(source)]
    else:
        files = sorted(files if files is not None else (p for p in source.iterdir() if p.is_file()))
        stamps = [f"{p.name}:{stamp(p)}" for p in files]
    key = ":".join([str(source.resolve()), *stamps])
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    root = cache_root()
    name = source.stem if source.is_file() else source.name
    return root / kind / f"{name}-{digest}"
