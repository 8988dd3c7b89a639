"""The canary's evidence beyond CloudWatch: labelled predictions scored by both versions, and the
spread of each version's captured confidences. The verdict itself is ``loopml.retrain.canary``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from loopml.capture import CapturedRow
from loopml.retrain.dataset import clean_row
from loopml.retrain.models import OnlineAccuracy, VersionMetrics
from loopml.schema import FeatureSchema, to_matrix

# schema, canary and champion pipelines, and (regression) the champion's interval half-width
Pipelines = Callable[[], tuple[FeatureSchema, Any, Any, float | None]]


def online_accuracy(rows: Sequence[CapturedRow], min_labels: int, pipelines: Pipelines) -> OnlineAccuracy | None:
    """Both pipelines on the same labelled rows: accuracies and the discordant pairs (champion-only
    right, canary-only right) a paired test needs. None when nothing was labelled; the pipelines are
    loaded only when there are enough labels to score. Regression: a prediction is right when it is within
    the champion's interval half-width of the label (one yardstick for both versions)."""
    if len(rows) < min_labels:
        return OnlineAccuracy(labels=len(rows), canary=None, champion=None) if rows else None
    schema, canary, champion, halfwidth = pipelines()
    cleaned = [r for r in (clean_row(row.features, row.label, schema) for row in rows) if r is not None]
    if len(cleaned) < min_labels:
        return OnlineAccuracy(labels=len(cleaned), canary=None, champion=None)
    columns = {name: [r[name] for r in cleaned] for name in [*schema.names, schema.target]}
    matrix = to_matrix(columns, schema)
    if schema.regression:
        values = np.asarray(columns[schema.target], dtype=float)
        within = float("inf") if halfwidth is None else halfwidth
        right = [np.abs(np.asarray(p.predict(matrix), dtype=float) - values) <= within for p in (canary, champion)]
    else:
        truth = np.asarray([str(v) for v in columns[schema.target]])
        right = [np.asarray([str(v) for v in p.predict(matrix)]) == truth for p in (canary, champion)]
    return OnlineAccuracy(
        labels=len(cleaned),
        canary=round(float(right[0].mean()), 6),
        champion=round(float(right[1].mean()), 6),
        discordant=(int((right[1] & ~right[0]).sum()), int((right[0] & ~right[1]).sum())),
    )


def with_confidences(metrics: VersionMetrics, rows: Sequence[CapturedRow], lambda_version: str) -> VersionMetrics:
    """``metrics`` with the count, mean and spread of the confidences this Lambda version captured."""
    confidences = np.asarray(
        [r.confidence for r in rows if r.lambda_version == lambda_version and r.confidence is not None], dtype=float
    )
    if len(confidences) < 2:
        return metrics
    return metrics.model_copy(
        update={
            "captured": float(len(confidences)),
            "mean_confidence": float(confidences.mean()),
            "confidence_std": float(confidences.std(ddof=1)),
        }
    )
