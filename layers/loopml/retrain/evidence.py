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

Pipelines = Callable[[], tuple[FeatureSchema, Any, Any]]  # schema, canary and champion pipelines


def online_accuracy(rows: Sequence[CapturedRow], min_labels: int, pipelines: Pipelines) -> OnlineAccuracy | None:
    """Both pipelines on the same labelled rows: accuracies and the discordant pairs (champion-only
    right, canary-only right) a paired test needs. None when nothing was labelled; the pipelines are
    loaded only when there are enough labels to score."""
    if len(rows) < min_labels:
        return OnlineAccuracy(labels=len(rows), canary=None, champion=None) if rows else None
    schema, canary, champion = pipelines()
    cleaned = [r for r in (clean_row(row.features, row.label, schema) for row in rows) if r is not None]
    if len(cleaned) < min_labels:
        return OnlineAccuracy(labels=len(cleaned), canary=None, champion=None)
    columns = {name: [r[name] for r in cleaned] for name in [*schema.names, schema.target]}
    matrix = to_matrix(columns, schema)
    truth = np.asarray([str(v) for v in columns[schema.target]])
    right = [np.asarray([str(v) for v in pipeline.predict(matrix)]) == truth for pipeline in (canary, champion)]
    return OnlineAccuracy(
        labels=len(cleaned),
        canary=round(float(right[0].mean()), 6),
        champion=round(float(right[1].mean()), 6),
        discordant=(int((right[1] & ~right[0]).sum()), int((right[0] & ~right[1]).sum())),
    )


def with_confidences(metrics: VersionMetrics, rows: Sequence[CapturedRow], lambda_version: str) -> VersionMetrics:
    """``metrics`` with the count, mean and spread of the confidences this Lambda version captured."""
    confidences = np.asarray([r.confidence for r in rows if r.lambda_version == lambda_version], dtype=float)
    if len(confidences) < 2:
        return metrics
    return metrics.model_copy(
        update={
            "captured": float(len(confidences)),
            "mean_confidence": float(confidences.mean()),
            "confidence_std": float(confidences.std(ddof=1)),
        }
    )
