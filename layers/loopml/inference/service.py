"""The model this execution environment serves: loaded once, verified, cached, and degraded gracefully.

Loading order: the verified local cache of the requested version, else the registry (verified by
SHA-256, then cached). ``runtime`` says which form is loaded: ``compiled`` (the ONNX file, scored by
onnxruntime: no scikit-learn, no pickle) or ``sklearn`` (the joblib bundle). If that fails (registry
unreachable, artifact corrupt or tampered with), the last verified copy in the cache serves instead and
every answer is marked degraded; loading is retried every ``retry_after_s`` seconds so a transient fault
heals without a cold start. With no verified copy at all, callers get ``ModelUnavailable`` (a 503 with
``Retry-After``).

A fallback answers *for* the version the environment was deployed with (``Serving.deployed_version``): its
answers name the model that produced them, but its metrics count against the deployed version, so a canary
whose artifact fails is judged as the canary, not hidden among the champion's answers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from loopml.errors import LoopmlError, ModelUnavailable
from loopml.files import write_whole
from loopml.inference.predictor import Predictor
from loopml.names import Runtime
from loopml.observability import logger
from loopml.registry import ModelMetadata, ModelRegistry, served_form, verify_and_load, version_number


def load_predictor(data: bytes, meta: ModelMetadata, where: str, runtime: Runtime) -> Predictor:
    """The version's form for ``runtime``, verified against its registered SHA-256 before it is parsed."""
    _, digest, _ = served_form(meta, runtime)
    if runtime == "compiled":
        from loopml.compiled import CompiledModel

        return Predictor(CompiledModel(data, digest, where), meta)
    return Predictor(verify_and_load(data, digest, where, meta.library_versions), meta)


@dataclass(frozen=True)
class Serving:
    predictor: Predictor
    deployed_version: int  # the version this environment stands for; ``metadata.version`` is the one answering
    degraded: bool
    reason: str | None = None

    @property
    def metadata(self) -> ModelMetadata:
        return self.predictor.metadata


class ModelService:
    def __init__(
        self,
        registry: ModelRegistry,
        model: str,
        version_ref: str,
        cache_dir: Path,
        retry_after_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        runtime: Runtime = "compiled",
    ) -> None:
        self._registry = registry
        self.runtime = runtime
        self.model = model
        self.version_ref = version_ref
        self._cache = cache_dir / model
        self.retry_after_s = retry_after_s
        self._clock = clock
        self._serving: Serving | None = None
        self._next_attempt = 0.0
        self.last_error: str | None = None

    def current(self) -> Serving:
        """What to answer with now; raises ModelUnavailable when there is nothing verified to serve."""
        serving = self._serving
        if serving is None or (serving.degraded and self._clock() >= self._next_attempt):
            serving = self.load()
        return serving

    def load(self) -> Serving:
        wanted = version_number(self.version_ref)  # known without the registry when the reference is a number
        try:
            wanted = self._registry.resolve(self.model, self.version_ref)
            predictor = self._load_version(wanted)
            self._serving = Serving(predictor, wanted, degraded=False)
            self.last_error = None
        except LoopmlError as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            self._next_attempt = self._clock() + self.retry_after_s
            logger.error(
                "model load failed",
                extra={"model": self.model, "version": self.version_ref, "error": self.last_error},
            )
            fallback = self._serving.predictor if self._serving else self._last_verified()
            if fallback is None:
                self._serving = None
                raise ModelUnavailable(
                    f"model {self.model!r} version {self.version_ref!r} cannot be loaded ({self.last_error}) "
                    "and no verified copy is available"
                ) from exc
            if wanted is None:  # an alias the registry could not resolve: stay with what it stood for
                wanted = self._serving.deployed_version if self._serving else fallback.metadata.version
            self._serving = Serving(fallback, wanted, degraded=True, reason=self.last_error)
        return self._serving

    def _load_version(self, version: int) -> Predictor:
        meta = self._registry.metadata(self.model, version)
        name, digest, key = served_form(meta, self.runtime)
        cached = self._from_cache(version)
        if cached is not None and served_form(cached.metadata, self.runtime)[1] == digest:
            return cached  # the registry vouches for the cached bytes: skip the artifact download
        data = self._registry.form(meta, self.runtime)
        predictor = load_predictor(data, meta, key, self.runtime)
        self._write_cache(meta, name, data)
        return predictor

    def _dir(self, version: int) -> Path:
        return self._cache / f"v{version}"

    def _from_cache(self, version: int) -> Predictor | None:
        folder = self._dir(version)
        try:
            meta = ModelMetadata.model_validate_json((folder / "metadata.json").read_bytes())
            name = served_form(meta, self.runtime)[0]
            return load_predictor((folder / name).read_bytes(), meta, str(folder / name), self.runtime)
        except (OSError, ValueError, LoopmlError):
            return None

    def _write_cache(self, meta: ModelMetadata, name: str, data: bytes) -> None:
        """Each file is written whole or not at all (a temporary file, then a rename): a reader sharing the
        cache never sees half an artifact, which would fail verification and leave it nothing to fall back on."""
        folder = self._dir(meta.version)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            write_whole(folder / name, data)
            write_whole(folder / "metadata.json", meta.model_dump_json().encode())
            write_whole(self._cache / "last_verified.json", json.dumps({"version": meta.version}).encode())
        except OSError as exc:  # a full /tmp must not stop serving
            logger.warning("could not cache model", extra={"error": str(exc)})

    def _last_verified(self) -> Predictor | None:
        try:
            version = int(json.loads((self._cache / "last_verified.json").read_text())["version"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return self._from_cache(version)
