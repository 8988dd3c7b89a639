"""The starter: an upload under ``incoming/<model>/`` is validated, then starts (or is refused) a retraining.

Nothing here touches AWS: the object store, the registry and the function starting the state machine
are injected. Transient failures (reading the object, Step Functions throttling) propagate, so the
message is retried and, past the queue's maxReceiveCount, dead-lettered. Everything decided about an
upload (rejected, started, refused) is written as a report next to it and the message is done.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from loopml import keys
from loopml.data import detect_format, sha256_hex
from loopml.errors import InvalidInput, ModelNotFound, NotFound
from loopml.names import validate_model_name
from loopml.registry import ModelRegistry
from loopml.retrain.errors import RetrainingInProgress
from loopml.retrain.models import RetrainInput
from loopml.retrain.trigger import Trigger
from loopml.starter.models import REPORT_SUFFIXES, Problem, UploadOutcome, UploadReport
from loopml.starter.validation import validate_upload
from loopml.store import ObjectStore
from loopml.uploads import Upload

MAX_REASON = 500


StartRetraining = Callable[[RetrainInput, Trigger], str]  # the execution ARN; RetrainingInProgress


class UploadStarter:
    def __init__(
        self,
        store: ObjectStore,
        registry: ModelRegistry,
        start: StartRetraining,
        max_upload_bytes: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._registry = registry
        self._start = start
        self._max_bytes = max_upload_bytes
        self._clock = clock

    # --- uploads --------------------------------------------------------------------------------
    def handle(self, upload: Upload) -> UploadOutcome:
        key = upload.key
        if upload.bucket != self._store.bucket or not key.startswith(keys.INCOMING) or key.endswith(REPORT_SUFFIXES):
            return UploadOutcome(action="ignored", key=key, detail="not an upload under incoming/ of this bucket")
        model, _, filename = key[len(keys.INCOMING) :].partition("/")
        report = self._base_report(upload, model if filename else None)
        problem = self._key_problem(model, filename, upload)
        if problem:
            return self._reject(report, [Problem(problem=problem)], 1)
        try:
            champion = self._registry.resolve(model, "champion")
            schema = self._registry.metadata(model, champion).feature_schema
        except ModelNotFound as exc:
            return self._reject(report, [Problem(problem=f"{exc}: register a champion before uploading data")], 1)
        report.champion_version = champion
        try:
            data = self._store.get(key)
        except NotFound:
            return UploadOutcome(action="ignored", key=key, detail="deleted before it was read")
        report.sha256 = sha256_hex(data)
        if self._already_started(key, report.sha256):
            return UploadOutcome(action="duplicate", key=key, detail="this file's retraining was already started")
        checked = validate_upload(data, filename, schema)
        report.rows = checked.rows
        if not checked.ok:
            return self._reject(report, checked.problems, checked.total)
        request = RetrainInput(model=model, reason=_reason(f"upload: {upload.uri}"), data_uri=upload.uri)
        try:
            arn = self._start(request, "upload")
        except RetrainingInProgress as exc:
            report.status, report.reason = "refused", f"{exc}; upload the file again once it has finished"
            return self._write(report, "refused", str(exc))
        report.status, report.execution_arn = "started", arn
        report.execution_name = arn.rsplit(":", 1)[-1]
        return self._write(report, "started", arn)

    def _key_problem(self, model: str, filename: str, upload: Upload) -> str | None:
        if not filename:
            return "uploads go under incoming/<model>/<file>, e.g. incoming/default/data.csv"
        try:
            validate_model_name(model)
            detect_format(filename)
        except InvalidInput as exc:
            return str(exc)
        if upload.size > self._max_bytes:
            return f"the file has {upload.size} bytes; the starter reads at most {self._max_bytes}"
        return None

    def _base_report(self, upload: Upload, model: str | None) -> UploadReport:
        return UploadReport(status="rejected", model=model, file=upload.uri, checked_at=self._clock())

    def _already_started(self, key: str, sha256: str) -> bool:
        try:
            previous = UploadReport.model_validate_json(self._store.get(key + ".started.json"))
        except (NotFound, ValueError):
            return False
        return previous.sha256 == sha256

    def _reject(self, report: UploadReport, problems: list[Problem], total: int) -> UploadOutcome:
        report.status, report.problems, report.problems_total = "rejected", problems, total
        return self._write(report, "rejected", f"{total} problem(s); first: {problems[0].problem}")

    def _write(self, report: UploadReport, action: Any, detail: str) -> UploadOutcome:
        key = report.file.split("/", 3)[3] + report.key_suffix
        body = report.model_dump_json(indent=1, exclude_none=True).encode()
        self._store.put(key, body, content_type="application/json")
        return UploadOutcome(action=action, key=report.file, report_key=key, detail=detail)

    # --- the schedule ---------------------------------------------------------------------------
    def scheduled(self, raw: Any) -> dict[str, Any]:
        """A schedule's constant input (or any direct invocation): the retraining input itself."""
        request = RetrainInput.parse(raw)
        self._registry.resolve(request.model, "champion")  # ModelNotFound names a model without one
        try:
            arn = self._start(request, "schedule")
        except RetrainingInProgress as exc:
            return {"status": "refused", "model": request.model, "reason": str(exc)}
        return {"status": "started", "model": request.model, "execution_arn": arn}


def _reason(text: str) -> str:
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."


__all__ = ["ObjectStore", "StartRetraining", "UploadStarter"]
