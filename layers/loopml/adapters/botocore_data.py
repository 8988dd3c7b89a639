"""botocore's data loader, made cheap for a cold start (``loopml.adapters.aws`` imports it with botocore,
when its first client is built).

A client's creation reads its service model and endpoint rules (1.5 MB of JSON for S3), which orjson reads
in a fifth of the standard library's time, and first lists every service botocore knows, to check the
name it was given: botocore stats every API version of 400 services for that (10 ms); the names of the
data folders answer the same question. botocore takes the loader as a component, so nothing is patched.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable
from typing import Any

import orjson
from botocore.loaders import JSONFileLoader, Loader, instance_cache


class OrjsonFileLoader(JSONFileLoader):
    """botocore's ``JSONFileLoader`` (paths without ``.json``; plain or gzipped files), reading with orjson."""

    OPENERS: dict[str, Callable[[str, str], Any]] = {".json": open, ".json.gz": gzip.open}

    def exists(self, file_path: str) -> bool:
        return any(os.path.isfile(file_path + ext) for ext in self.OPENERS)

    def load_file(self, file_path: str) -> Any:
        for ext, opener in self.OPENERS.items():
            if os.path.isfile(file_path + ext):
                with opener(file_path + ext, "rb") as fp:
                    return orjson.loads(fp.read())
        return None


class ColdStartLoader(Loader):
    """botocore's ``Loader`` with orjson reading its files and a service list from folder names."""

    @instance_cache
    def list_available_services(self, type_name: str) -> list[str]:
        """Every entry of the data folders: a superset of botocore's answer (it also names the folders that
        lack ``type_name``, which a client then fails to load with botocore's ``DataNotFoundError``), and
        membership is all that building a client asks of it."""
        found: set[str] = set()
        for path in self.search_paths:
            if os.path.isdir(path):
                found.update(os.listdir(path))
        return sorted(found)


def loader(data_path: str | None) -> ColdStartLoader:
    """What ``botocore.loaders.create_loader`` builds for ``data_path`` (AWS_DATA_PATH), as a ``ColdStartLoader``."""
    paths = [os.path.expanduser(os.path.expandvars(p)) for p in data_path.split(os.pathsep)] if data_path else None
    return ColdStartLoader(extra_search_paths=paths, file_loader=OrjsonFileLoader())
