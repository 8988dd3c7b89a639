"""Files written whole: for folders that readers share (a model cache, a folder registry)."""

from __future__ import annotations

import os
from pathlib import Path

PARTIAL = ".partial"  # the suffix of a file still being written; readers and listings skip it


def write_whole(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, then rename it over ``path``: a reader sees the old
    file or the new one, never half of one (the rename is atomic within a filesystem)."""
    partial = path.with_name(f"{path.name}.{os.getpid()}{PARTIAL}")
    partial.write_bytes(data)
    os.replace(partial, path)
