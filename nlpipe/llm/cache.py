"""Where nlpipe keeps files per user: converted models, shared by every working directory."""

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
