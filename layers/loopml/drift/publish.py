"""Drift scores as CloudWatch metrics, through the Embedded Metric Format (Powertools ``Metrics``).

Run-level metrics carry the ``model`` dimension; per-feature scores are single metrics with ``model``
and ``feature``, so an alarm can watch one feature. Alarm on ``DatasetDriftShare`` against the drift
share threshold (0.5 by default), or on ``PerformanceRegressed`` >= 1.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from loopml import metric_names as names
from loopml.drift.models import DriftRunReport
from loopml.retrain.trigger import TriggerAction

NAMES = names.LIVE_PERFORMANCE


class EmfPublisher:
    def __init__(self, metrics: Any, namespace: str, service: str) -> None:
        self._metrics = metrics
        self._namespace = namespace
        self._service = service

    def __call__(self, report: DriftRunReport) -> None:
        s = report.summary
        m = self._metrics
        m.add_dimension(name=names.MODEL, value=s.model)
        m.add_metric(name=names.DRIFT_ROWS, unit=MetricUnit.Count, value=s.n_rows)
        m.add_metric(name=names.LABELLED_ROWS, unit=MetricUnit.Count, value=s.n_labelled)
        if s.share_drifted is not None:
            m.add_metric(name=names.DATASET_DRIFT_SHARE, unit=MetricUnit.NoUnit, value=s.share_drifted)
            m.add_metric(name=names.DRIFTED_FEATURES, unit=MetricUnit.Count, value=s.n_drifted)
        m.add_metric(name=names.DATA_DRIFT_DETECTED, unit=MetricUnit.Count, value=int(s.data_drift.value == "drifted"))
        pd = report.prediction_drift
        if pd is not None and pd.headline is not None and pd.headline.score is not None:
            m.add_metric(name=names.PREDICTION_DRIFT_SCORE, unit=MetricUnit.NoUnit, value=pd.headline.score)
        for estimate in report.performance.metrics:
            if estimate.value is not None and estimate.name in NAMES:
                m.add_metric(name=NAMES[estimate.name], unit=MetricUnit.NoUnit, value=estimate.value)
                if estimate.lower is not None:
                    m.add_metric(
                        name=NAMES[estimate.name] + names.LOWER_BOUND, unit=MetricUnit.NoUnit, value=estimate.lower
                    )
        m.add_metric(
            name=names.PERFORMANCE_REGRESSED, unit=MetricUnit.Count, value=int(s.performance.value == "regressed")
        )
        m.add_metric(
            name=names.RETRAINING_STARTED, unit=MetricUnit.Count, value=int(s.trigger.action is TriggerAction.started)
        )
        dims = {names.SERVICE: self._service, names.MODEL: s.model}
        for f in report.data_drift.features:
            # the score's direction depends on the method (p-value: low is drift); PSI always grows with drift
            for name, value in ((names.FEATURE_DRIFT_SCORE, f.score), (names.FEATURE_PSI, f.psi)):
                if value is None:
                    continue
                with single_metric(
                    name=name,
                    unit=MetricUnit.NoUnit,
                    value=value,
                    namespace=self._namespace,
                    default_dimensions={**dims, names.FEATURE: f.name},
                ):
                    pass
