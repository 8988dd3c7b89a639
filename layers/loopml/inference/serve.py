"""Turns scored rows into the API response, and into the capture records the flush builds after it."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

from aws_lambda_powertools.metrics import Metrics, MetricUnit

from loopml import metric_names as names
from loopml.capture import optout_record, prediction_record
from loopml.feedback import layout
from loopml.inference.models import PredictRequest
from loopml.inference.service import Serving
from loopml.schema import RowFlags

# one dict for every row with nothing to flag (most rows): it is only ever encoded, never changed
_NOTHING_FLAGGED: dict[str, list[str]] = {"out_of_range": [], "unseen_category": [], "missing": []}


def score(
    serving: Serving,
    request: PredictRequest,
    explain: bool,
    request_id: str,
    lambda_version: str,
    subject_hash: str | None = None,
) -> tuple[dict[str, Any], Callable[[], list[dict[str, Any]]]]:
    """The response, and what builds its capture records: called by the capture flush, after the response
    has gone (building 100 records costs a tenth of the request). ``subject_hash`` is the keyed hash of
    ``request.subject_id``; with ``consent`` false the records are opt-out markers (prediction id and
    subject only) instead of captures."""
    started = time.perf_counter()
    rows = request.rows
    scored = serving.predictor.score(rows, explain=explain, **request.locations)
    meta = serving.metadata
    latency_ms = round((time.perf_counter() - started) * 1000, 3)
    moment = datetime.now(UTC)
    ids = layout.prediction_ids(moment, len(rows))
    version = meta.version
    out: list[dict[str, Any]] = [
        {
            "prediction_id": prediction_id,
            "prediction": label,
            "probabilities": probabilities,
            "confidence": confidence,
            "interval": interval,
            "model_version": version,
            "lambda_version": lambda_version,
            "flags": _NOTHING_FLAGGED if flags is RowFlags.NONE else _flags(flags),
            "explanation": explanation,
        }
        for prediction_id, label, probabilities, confidence, interval, flags, explanation in zip(
            ids,
            scored.labels,
            scored.probabilities,
            scored.confidences,
            scored.intervals,
            scored.flags,
            scored.explanations,
            strict=True,
        )
    ]
    response = {
        "model": meta.model,
        "model_version": meta.version,
        "lambda_version": lambda_version,
        "degraded": serving.degraded,
        "degraded_reason": serving.reason,
        "explainer": serving.predictor.explainer if explain else None,
        "predictions": out,
    }
    now = moment.isoformat()

    def records() -> list[dict[str, Any]]:
        if not request.consent:
            return [
                optout_record(
                    prediction_id=prediction_id,
                    model=meta.model,
                    model_version=meta.version,
                    timestamp=now,
                    subject_hash=subject_hash,
                )
                for prediction_id in ids
            ]
        return [
            prediction_record(
                prediction_id=answer["prediction_id"],
                model=meta.model,
                model_version=meta.version,
                lambda_version=lambda_version,
                request_id=request_id,
                timestamp=now,
                features=row,
                prediction=answer["prediction"],
                probabilities=answer["probabilities"],
                confidence=answer["confidence"],
                interval=answer["interval"],
                latency_ms=latency_ms,
                degraded=serving.degraded,
                flags=answer["flags"],
                subject_hash=subject_hash,
            )
            for row, answer in zip(rows, out, strict=True)
        ]

    return response, records


def _flags(flags: RowFlags) -> dict[str, list[str]]:
    return {"out_of_range": flags.out_of_range, "unseen_category": flags.unseen_category, "missing": flags.missing}


_PREDICTION, _CONFIDENCE = itemgetter("prediction"), itemgetter("confidence")


def record_metrics(metrics: Metrics, serving: Serving, response: dict[str, Any], latency_ms: float) -> None:
    """EMF metrics dimensioned by the deployed model version (a fallback's answers count against the version
    it stands in for, so the canary check sees a failing canary): one JSON line per invocation, no API call."""
    metrics.add_dimension(names.MODEL, serving.metadata.model)
    metrics.add_dimension(names.MODEL_VERSION, str(serving.deployed_version))
    predictions = response["predictions"]
    metrics.add_metric(name=names.LATENCY, unit=MetricUnit.Milliseconds, value=latency_ms)
    metrics.add_metric(name=names.PREDICTIONS, unit=MetricUnit.Count, value=len(predictions))
    metrics.add_metric(name=names.DEGRADED, unit=MetricUnit.Count, value=len(predictions) if serving.degraded else 0)
    predicted = list(map(_PREDICTION, predictions))
    if serving.predictor.regression:
        mean_value = sum(predicted) / len(predictions)
        metrics.add_metric(name=names.PREDICTED_VALUE, unit=MetricUnit.NoUnit, value=round(mean_value, 6))
        return
    mean_confidence = sum(map(_CONFIDENCE, predictions)) / len(predictions)
    metrics.add_metric(name=names.CONFIDENCE, unit=MetricUnit.NoUnit, value=round(mean_confidence, 6))
    for label, count in Counter(map(str, predicted)).items():
        metrics.add_metric(name=f"{names.PREDICTED_CLASS}{label}", unit=MetricUnit.Count, value=count)
