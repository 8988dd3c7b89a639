"""Deployed zips keyed by Lambda's ``CodeSha256``, each extracted once: the code of every local version."""

from __future__ import annotations

import base64
import hashlib
import shutil
import threading
import uuid
import zipfile
from pathlib import Path

from loopml.errors import NotFound


class FunctionNotFound(NotFound):
    """The function, version or alias does not exist in moto's Lambda store."""


class CodeStore:
    """Deployed zips keyed by SHA-256, each extracted once into its own folder."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    @staticmethod
    def sha256(data: bytes) -> str:
        """Lambda's ``CodeSha256``: the base64 of the zip's SHA-256 digest."""
        return base64.b64encode(hashlib.sha256(data).digest()).decode()

    def _hex(self, sha_b64: str) -> str:
        return base64.b64decode(sha_b64).hex()

    def put(self, data: bytes) -> str:
        sha = self.sha256(data)
        path = self.root / f"{self._hex(sha)}.zip"
        if not path.exists():
            tmp = path.with_suffix(f".{uuid.uuid4().hex}.tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
        return sha

    def has(self, sha_b64: str) -> bool:
        return (self.root / f"{self._hex(sha_b64)}.zip").exists()

    def extracted(self, sha_b64: str) -> Path:
        hex_digest = self._hex(sha_b64)
        target = self.root / hex_digest
        with self._lock:
            if not (target / ".complete").exists():
                archive = self.root / f"{hex_digest}.zip"
                if not archive.exists():
                    raise FunctionNotFound(
                        f"no code zip with CodeSha256 {sha_b64} in {self.root}: deploy it through the local "
                        "stack (create_function/update_function_code with ZipFile)"
                    )
                shutil.rmtree(target, ignore_errors=True)
                with zipfile.ZipFile(archive) as zf:
                    zf.extractall(target)
                (target / ".complete").touch()
        return target
