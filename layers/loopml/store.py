"""The object store port: one contract for the models bucket, whatever part of loopml reads or writes it.

``loopml.adapters.s3.S3ObjectStore`` implements it on S3 and ``loopml_dev.memory.MemoryObjectStore`` in
memory (every unit test uses that one). Adapters map service errors to ``NotFound`` (no such key),
``VersionConflict`` (a conditional write lost) and ``TransientError``; callers never see ``ClientError``.
"""

from __future__ import annotations

from typing import IO, Protocol


class PartSink(Protocol):
    """A large object written in parts: nothing is visible until ``close``; ``abort`` leaves no trace."""

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


class ObjectStore(Protocol):
    bucket: str

    def uri(self, key: str) -> str: ...

    def get(self, key: str) -> bytes: ...  # NotFound

    def open(self, key: str) -> IO[bytes]: ...  # a stream, for files too large to hold; NotFound

    def put(self, key: str, body: bytes, *, if_none_match: bool = False, content_type: str | None = None) -> None:
        """``if_none_match``: create only, ``VersionConflict`` when the key exists (S3's ``If-None-Match: *``)."""

    def sink(self, key: str, content_type: str) -> PartSink: ...

    def delete(self, key: str) -> None: ...

    def list_keys(self, prefix: str) -> list[str]: ...  # sorted, like S3's listing
