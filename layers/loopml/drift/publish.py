"""Drift scores as CloudWatch metrics, through the Embedded Metric Format (Powertools ``Metrics``).

Run-level metrics carry the ``model`` dimension; per-feature scores are single metrics with ``model``
and ``feature``, so an alarm can watch one feature. Alarm on ``DatasetDriftShare`` against the drift
share threshold (0.5 by default), or on ``PerformanceRegressed`` >= 1.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from loopml.drift.models import DriftRunReport, TriggerAction

NAMES = {"accuracy": "LiveAccuracy", "f1_macro": "LiveF1Macro", "roc_auc": "LiveRocAuc", "ece": "LiveEce"}


class EmfPublisher:
    def __init__(self, metrics: Any, namespace: str, service: str) -> None:
        self._metrics = metrics
        self._namespace = namespace
        self._service = service

    def __call__(self, report: DriftRunReport) -> None:
        s = report.summary
        m = self._metrics
        m.add_dimension(name="model", value=s.model)
        m.add_metric(name="DriftRows", unit=MetricUnit.Count, value=s.n_rows)
        m.add_metric(name="LabelledRows", unit=MetricUnit.Count, value=s.n_labelled)
        if s.share_drifted is not None:
            m.add_metric(name="DatasetDriftShare", unit=MetricUnit.NoUnit, value=s.share_drifted)
            m.add_metric(name="DriftedFeatures", unit=MetricUnit.Count, value=s.n_drifted)
        m.add_metric(name="DataDriftDetected", unit=MetricUnit.Count, value=int(s.data_drift.value == "drifted"))
        pd = report.prediction_drift
        if pd is not None and pd.predicted_class.score is not None:
            m.add_metric(name="PredictionDriftScore", unit=MetricUnit.NoUnit, value=pd.predicted_class.score)
        for estimate in report.performance.metrics:
            if estimate.value is not None and estimate.name in NAMES:
                m.add_metric(name=NAMES[estimate.name], unit=MetricUnit.NoUnit, value=estimate.value)
                if estimate.lower is not None:
                    m.add_metric(name=NAMES[estimate.name] + "Lower", unit=MetricUnit.NoUnit, value=estimate.lower)
        m.add_metric(name="PerformanceRegressed", unit=MetricUnit.Count, value=int(s.performance.value == "regressed"))
        m.add_metric(
            name="RetrainingStarted", unit=MetricUnit.Count, value=int(s.trigger.action is TriggerAction.started)
        )
        dims = {"service": self._service, "model": s.model}
        for f in report.data_drift.features:
            # the score's direction depends on the method (p-value: low is drift); PSI always grows with drift
            for name, value in (("FeatureDriftScore", f.score), ("FeaturePsi", f.psi)):
                if value is None:
                    continue
                with single_metric(
                    name=name,
                    unit=MetricUnit.NoUnit,
                    value=value,
                    namespace=self._namespace,
                    default_dimensions={**dims, "feature": f.name},
                ):
                    pass
