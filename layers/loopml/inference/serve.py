"""Turns scored rows into the API response and the capture records, in one pass."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.metrics import Metrics, MetricUnit

from loopml import metric_names as names
from loopml.capture import optout_record, prediction_record
from loopml.feedback import layout
from loopml.inference.models import PredictRequest
from loopml.inference.service import Serving


def score(
    serving: Serving,
    request: PredictRequest,
    explain: bool,
    request_id: str,
    lambda_version: str,
    subject_hash: str | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``subject_hash`` is the keyed hash of ``request.subject_id``; with ``consent`` false the records
    are opt-out markers (prediction id and subject only) instead of captures."""
    started = time.perf_counter()
    rows = request.rows
    predictions = serving.predictor.predict(rows, explain=explain, **request.locations)
    meta = serving.metadata
    latency_ms = round((time.perf_counter() - started) * 1000, 3)
    moment = datetime.now(UTC)
    now = moment.isoformat()
    out: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    for row, p, prediction_id in zip(rows, predictions, layout.prediction_ids(moment, len(rows)), strict=True):
        flags = {
            "out_of_range": p.flags.out_of_range,
            "unseen_category": p.flags.unseen_category,
            "missing": p.flags.missing,
        }
        out.append(
            {
                "prediction_id": prediction_id,
                "prediction": p.label,
                "probabilities": p.probabilities,
                "confidence": p.confidence,
                "interval": p.interval,
                "model_version": meta.version,
                "lambda_version": lambda_version,
                "flags": flags,
                "explanation": p.explanation,
            }
        )
        if not request.consent:
            records.append(
                optout_record(
                    prediction_id=prediction_id,
                    model=meta.model,
                    model_version=meta.version,
                    timestamp=now,
                    subject_hash=subject_hash,
                )
            )
            continue
        records.append(
            prediction_record(
                prediction_id=prediction_id,
                model=meta.model,
                model_version=meta.version,
                lambda_version=lambda_version,
                request_id=request_id,
                timestamp=now,
                features=row,
                prediction=p.label,
                probabilities=p.probabilities,
                confidence=p.confidence,
                interval=p.interval,
                latency_ms=latency_ms,
                degraded=serving.degraded,
                flags=flags,
                subject_hash=subject_hash,
            )
        )
    response = {
        "model": meta.model,
        "model_version": meta.version,
        "lambda_version": lambda_version,
        "degraded": serving.degraded,
        "degraded_reason": serving.reason,
        "explainer": serving.predictor.explainer if explain else None,
        "predictions": out,
    }
    return response, records


def record_metrics(metrics: Metrics, serving: Serving, response: dict[str, Any], latency_ms: float) -> None:
    """EMF metrics dimensioned by model version: one JSON line per invocation, no API call."""
    metrics.add_dimension(names.MODEL, serving.metadata.model)
    metrics.add_dimension(names.MODEL_VERSION, str(serving.metadata.version))
    predictions = response["predictions"]
    metrics.add_metric(name=names.LATENCY, unit=MetricUnit.Milliseconds, value=latency_ms)
    metrics.add_metric(name=names.PREDICTIONS, unit=MetricUnit.Count, value=len(predictions))
    metrics.add_metric(name=names.DEGRADED, unit=MetricUnit.Count, value=len(predictions) if serving.degraded else 0)
    if serving.predictor.regression:
        mean_value = sum(p["prediction"] for p in predictions) / len(predictions)
        metrics.add_metric(name=names.PREDICTED_VALUE, unit=MetricUnit.NoUnit, value=round(mean_value, 6))
        return
    mean_confidence = sum(p["confidence"] for p in predictions) / len(predictions)
    metrics.add_metric(name=names.CONFIDENCE, unit=MetricUnit.NoUnit, value=round(mean_confidence, 6))
    counts: dict[str, int] = {}
    for p in predictions:
        counts[str(p["prediction"])] = counts.get(str(p["prediction"]), 0) + 1
    for label, count in counts.items():
        metrics.add_metric(name=f"{names.PREDICTED_CLASS}{label}", unit=MetricUnit.Count, value=count)
