"""``loopml.store.ObjectStore`` on a plain folder: the models bucket's layout as files.

For registering a model without AWS or a running stack (``loopml register --folder``); the folder can be
synced to a bucket as it is (``aws s3 sync``). Conditional creates use ``O_EXCL``, so two writers racing
for a version number behave as they do on S3.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

from loopml.errors import InvalidInput, NotFound, VersionConflict
from loopml.files import PARTIAL, write_whole


class FolderObjectStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.bucket = self.root.name

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root) or not key or key.endswith("/"):
            raise InvalidInput(f"not an object key inside {self.root}: {key!r}")
        return path

    def uri(self, key: str) -> str:
        return (self.root / key).as_uri() if key else self.root.as_uri() + "/"

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFound(key) from None

    def open(self, key: str) -> IO[bytes]:
        try:
            return self._path(key).open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFound(key) from None

    def put(self, key: str, body: bytes, *, if_none_match: bool = False, content_type: str | None = None) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        if if_none_match:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                raise VersionConflict(key) from None
            with os.fdopen(fd, "wb") as out:
                out.write(body)
            return
        write_whole(path, body)  # readers never see half an object

    def sink(self, key: str, content_type: str) -> _FolderSink:
        return _FolderSink(self._path(key))

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def list_keys(self, prefix: str) -> list[str]:
        if not self.root.is_dir():
            return []
        found = (p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file())
        return sorted(k for k in found if k.startswith(prefix) and not k.endswith(PARTIAL))


class _FolderSink:
    def __init__(self, path: Path) -> None:
        self._final = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._partial = path.with_name(path.name + PARTIAL)
        self._out = self._partial.open("wb")

    def write(self, data: bytes) -> None:
        self._out.write(data)

    def close(self) -> None:
        self._out.close()
        self._partial.replace(self._final)

    def abort(self) -> None:
        self._out.close()
        self._partial.unlink(missing_ok=True)
