"""Scores one uploaded file with the model's champion and writes the scored file and the error report.

The champion is resolved for every file (a promotion between two files takes effect at once) and
loaded through ``ModelService``: verified by SHA-256, cached on local disk. A degraded load (the
registry unreachable, a cached copy only) fails the message so it is retried rather than scored by a
version that may no longer be the champion. Problems with the file itself (unknown model, missing
columns, unsupported type) are reported in the error report and the message is done.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, cast

from loopml.batch.models import BatchJob, BatchReport, BatchSummary, RowError, rejected_key
from loopml.batch.scoring import OutputWriter, chunks, read_rows, score_chunk, tally
from loopml.errors import InvalidInput, ModelNotFound, NotFound, TransientError
from loopml.inference.predictor import Predictor
from loopml.inference.service import ModelService
from loopml.names import Runtime
from loopml.registry import ModelRegistry
from loopml.store import ObjectStore
from loopml.uploads import Upload


class Champions:
    """The champion of each model, loaded once per version and verified."""

    def __init__(self, registry: ModelRegistry, cache_dir: Path) -> None:
        self._registry = registry
        self._cache_dir = cache_dir
        self._services: dict[tuple[str, int], ModelService] = {}

    def predictor(self, model: str) -> Predictor:
        version = self._registry.resolve(model, "champion")  # ModelNotFound: no champion
        service = self._services.get((model, version))
        if service is None:
            # the compiled path whenever the version has one (no pickle is loaded); else scikit-learn's
            runtime: Runtime = "compiled" if self._registry.metadata(model, version).compiled else "sklearn"
            service = ModelService(self._registry, model, str(version), self._cache_dir, runtime=runtime)
            self._services = {(model, version): service, **{k: v for k, v in self._services.items() if k[0] != model}}
        serving = service.current()
        if serving.degraded:
            raise TransientError(f"champion v{version} of {model!r} could not be loaded: {serving.reason}")
        return serving.predictor


class BatchScorer:
    def __init__(
        self,
        store: ObjectStore,
        champions: Champions,
        chunk_rows: int,
        max_listed_errors: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._champions = champions
        self._chunk_rows = chunk_rows
        self._max_listed = max_listed_errors
        self._clock = clock

    def handle(self, upload: Upload) -> BatchSummary | None:
        """None for objects that are not batch inputs of this bucket."""
        if upload.bucket != self._store.bucket:
            return None
        try:
            job = BatchJob.from_key(upload.key)
        except InvalidInput as exc:
            return self._file_error(upload, str(exc))
        summary = BatchSummary(model=job.model, input=upload.uri, format=job.format, started_at=self._clock())
        try:
            predictor = self._champions.predictor(job.model)
        except ModelNotFound as exc:
            return self._finish(job, summary, [], f"{exc}: register a champion before scoring with it")
        summary.model_version = predictor.metadata.version
        try:
            stream = self._store.open(job.input_key)
        except NotFound:
            return None  # deleted before it was read: nothing to score
        try:
            return self._score(job, summary, predictor, stream)
        finally:
            stream.close()

    def _score(self, job: BatchJob, summary: BatchSummary, predictor: Predictor, stream: IO[bytes]) -> BatchSummary:
        raw = cast(IO[bytes], gzip.GzipFile(fileobj=stream)) if job.gzipped else stream
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="" if job.format == "csv" else None)
        schema = predictor.metadata.feature_schema
        errors: list[RowError] = []
        try:
            header, rows = read_rows(text, job.format, schema)
        except (InvalidInput, UnicodeDecodeError, OSError, EOFError) as exc:
            return self._finish(job, summary, errors, _file_problem(exc))
        writer = OutputWriter(job.format, header, [str(c) for c in predictor.classes], predictor.metadata.version)
        content_type = "text/csv" if job.format == "csv" else "application/x-ndjson"
        sink = self._store.sink(job.scored_key, content_type)
        try:
            for chunk in chunks(rows, self._chunk_rows):
                result = score_chunk(predictor, chunk)
                tally(summary, result, errors, self._max_listed)
                sink.write(writer.encode(result.rows))
            sink.write(writer.finish())
        except (UnicodeDecodeError, OSError, EOFError, csv.Error) as exc:
            sink.abort()
            return self._finish(
                job, summary, errors, f"{_file_problem(exc)} after row {summary.rows}; nothing published"
            )
        except BaseException:
            sink.abort()
            raise
        sink.close()
        summary.output = f"s3://{self._store.bucket}/{job.scored_key}"
        return self._finish(job, summary, errors, None)

    def _finish(
        self, job: BatchJob, summary: BatchSummary, errors: list[RowError], problem: str | None
    ) -> BatchSummary:
        summary.finished_at = self._clock()
        summary.errors_listed = len(errors)
        if problem is not None:
            summary.output = None
        report = BatchReport(summary=summary, file_error=problem, errors=errors)
        self._store.put(job.errors_key, report.model_dump_json(indent=1).encode(), content_type="application/json")
        return summary

    def _file_error(self, upload: Upload, problem: str) -> BatchSummary:
        """An input outside the convention (unsupported type, bad model name): only a report."""
        now = self._clock()
        summary = BatchSummary(model="", input=upload.uri, started_at=now, finished_at=now)
        report = BatchReport(summary=summary, file_error=problem)
        body = report.model_dump_json(indent=1).encode()
        self._store.put(rejected_key(upload.key), body, content_type="application/json")
        return summary


def _file_problem(exc: BaseException) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text ({exc.reason} at byte {exc.start})"
    if isinstance(exc, OSError | EOFError):
        return f"not a readable gzip file ({exc})"
    return str(exc)
