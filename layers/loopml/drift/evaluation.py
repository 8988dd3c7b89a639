"""One model version over one window of captured rows: every check of the drift engine, no I/O.

Rows become typed columns (``columns_from_matrix``); data drift is measured against the version's
reference profile, prediction and label drift against the training-time distributions, performance
against the version's validation metrics (through the engine's confidence intervals), data quality off
the drift report, and the bias audit over the schema's sensitive features. Too few rows or labels is a
verdict (``insufficient_data``) in each part, never an error.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from loopml.capture import CapturedRow
from loopml.drift.models import MonitoringConfig, TriggerPolicy
from loopml.errors import InvalidInput
from loopml.registry import ModelMetadata
from loopml.schema import CATEGORY_MISSING, FeatureKind, FeatureSchema
from loopml.statistics.bias import BiasConfig, BiasReport, RegressionBiasReport, evaluate_bias, evaluate_regression_bias
from loopml.statistics.engine import (
    DataDriftReport,
    DriftVerdict,
    FeatureDrift,
    PredictionDriftReport,
    evaluate_data_drift,
    evaluate_label_drift,
    evaluate_prediction_drift,
    evaluate_target_drift,
    evaluate_value_drift,
)
from loopml.statistics.performance import (
    PerformanceReport,
    PerformanceVerdict,
    evaluate_performance,
    evaluate_regression_performance,
)
from loopml.statistics.profile import ReferenceProfile, columns_from_matrix
from loopml.statistics.quality import DataQualityReport, evaluate_data_quality

# validation metric names (training) -> the engine's names; the others (n, log_loss) have no live twin
VALIDATION_METRICS = {"accuracy": "accuracy", "f1_macro": "f1_macro", "roc_auc": "roc_auc", "calibration_error": "ece"}


@dataclass
class WindowEvaluation:
    n_rows: int
    n_labelled: int
    data_drift: DataDriftReport
    prediction_drift: PredictionDriftReport | None
    label_drift: FeatureDrift | None
    performance: PerformanceReport
    quality: DataQualityReport
    bias: BiasReport | None
    bias_labelled: BiasReport | None
    notes: list[str] = field(default_factory=list)
    regression_bias: RegressionBiasReport | None = None

    @property
    def bias_flagged(self) -> bool | None:
        reports = [r for r in (self.bias, self.bias_labelled, self.regression_bias) if r is not None]
        return any(r.flagged for r in reports) if reports else None


def reference_profile(meta: ModelMetadata) -> ReferenceProfile:
    if not meta.reference_profile:
        raise InvalidInput(
            f"model {meta.model!r} v{meta.version} has no reference profile: "
            "retrain or re-register it to monitor drift",
            [{"loc": ["model_version"], "msg": "version has no reference profile", "type": "value_error"}],
        )
    return ReferenceProfile.model_validate(meta.reference_profile)


def check_config(config: MonitoringConfig, profile: ReferenceProfile, schema: FeatureSchema) -> None:
    """Name the bad field of a config before the engine sees it."""
    errors = [
        {
            "loc": ["config", "drift", "per_feature", name],
            "msg": f"not a feature of this model; known: {sorted(profile.features)}",
            "type": "value_error",
        }
        for name in sorted(set(config.drift.per_feature) - set(profile.features))
    ]
    positive = config.bias.positive_class
    if positive is not None and str(positive) not in {str(c) for c in schema.classes}:
        errors.append(
            {
                "loc": ["config", "bias", "positive_class"],
                "msg": f"not a class of this model; classes: {schema.classes}",
                "type": "value_error",
            }
        )
    if errors:
        raise InvalidInput("monitoring config does not fit this model", errors)


def feature_columns(rows: Sequence[CapturedRow], schema: FeatureSchema) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Typed columns (float64 with NaN; strings with the missing marker) and type violations per feature."""
    matrix = np.empty((len(rows), len(schema.features)), dtype=object)
    violations: dict[str, int] = {}
    for j, spec in enumerate(schema.features):
        bad = 0
        for i, row in enumerate(rows):
            value = row.features.get(spec.name)
            if spec.kind is FeatureKind.numeric:
                number = math.nan
                if isinstance(value, int | float) and not isinstance(value, bool):
                    number = float(value) if math.isfinite(value) else math.nan
                    bad += not math.isfinite(value)
                elif value is not None:
                    bad += 1
                matrix[i, j] = number
            elif value is None:
                matrix[i, j] = CATEGORY_MISSING
            else:
                bad += not isinstance(value, str)
                matrix[i, j] = str(value)
        if bad:
            violations[spec.name] = bad
    return columns_from_matrix(matrix, schema), violations


def _reference_metrics(meta: ModelMetadata) -> dict[str, float]:
    return {
        engine_name: float(value)
        for name, engine_name in VALIDATION_METRICS.items()
        if isinstance(value := meta.metrics.get(name), int | float)
    }


def _proba(rows: Sequence[CapturedRow], classes: Sequence[str | int]) -> np.ndarray:
    return np.array([[row.probabilities.get(str(c), 0.0) for c in classes] for row in rows], dtype=np.float64)


def evaluate_window(
    meta: ModelMetadata, rows: Sequence[CapturedRow], config: MonitoringConfig, evaluated_at: str | None = None
) -> WindowEvaluation:
    schema = meta.feature_schema
    profile = reference_profile(meta)
    check_config(config, profile, schema)
    notes: list[str] = []
    classes = schema.classes
    class_names = {str(c) for c in classes}
    columns, violations = feature_columns(rows, schema)
    data_drift = evaluate_data_drift(profile, columns, config.drift, evaluated_at)
    reported = {f.name for f in data_drift.features}
    quality = evaluate_data_quality(data_drift, {k: v for k, v in violations.items() if k in reported}, config.quality)
    if schema.regression:
        return _regression_window(meta, profile, rows, columns, data_drift, quality, config, notes)
    predicted = np.array([str(row.prediction) for row in rows], dtype=object)

    prediction_drift = None
    if profile.predictions is None:
        notes.append("the reference profile has no prediction distribution: prediction drift not evaluated")
    else:
        confidence = np.array([row.confidence for row in rows], dtype=np.float64)
        prediction_drift = evaluate_prediction_drift(profile, predicted, confidence, config.drift)

    labelled = [row for row in rows if row.label is not None and str(row.label) in class_names]
    foreign = sum(1 for row in rows if row.label is not None) - len(labelled)
    if foreign:
        notes.append(f"{foreign} labels are not classes of this model and were left out")
    labels = np.array([str(row.label) for row in labelled], dtype=object)
    label_drift = None
    if profile.labels is None:
        notes.append("the reference profile has no label distribution: label drift not evaluated")
    elif labelled:
        label_drift = evaluate_label_drift(profile, labels, config.drift)
    else:
        notes.append("no labelled predictions in the window: label drift and performance not evaluated")

    performance = evaluate_performance(
        labels.tolist(),
        [str(row.prediction) for row in labelled],
        [str(c) for c in classes],
        proba=_proba(labelled, classes) if labelled else None,
        reference_metrics=_reference_metrics(meta),
        config=config.performance,
    )

    bias = bias_labelled = None
    sensitive = schema.sensitive_names
    if sensitive and rows:
        positive = config.bias.positive_class if config.bias.positive_class is not None else classes[-1]
        bias_config = BiasConfig(
            positive_class=str(positive),
            min_group_size=config.bias.min_group_size,
            parity_threshold=config.bias.parity_threshold,
            opportunity_threshold=config.bias.opportunity_threshold,
        )
        bias = evaluate_bias({name: columns[name] for name in sensitive}, predicted, bias_config)
        if len(labelled) >= config.performance.min_labels:
            ids = {row.prediction_id for row in labelled}
            mask = np.array([row.prediction_id in ids for row in rows], dtype=bool)
            bias_labelled = evaluate_bias(
                {name: columns[name][mask] for name in sensitive}, predicted[mask], bias_config, y_true=labels
            )
    elif not sensitive:
        notes.append("the schema marks no feature as sensitive: no bias audit")
    return WindowEvaluation(
        n_rows=len(rows),
        n_labelled=len(labelled),
        data_drift=data_drift,
        prediction_drift=prediction_drift,
        label_drift=label_drift,
        performance=performance,
        quality=quality,
        bias=bias,
        bias_labelled=bias_labelled,
        notes=notes,
    )


def _regression_window(
    meta: ModelMetadata,
    profile: ReferenceProfile,
    rows: Sequence[CapturedRow],
    columns: dict[str, np.ndarray],
    data_drift: DataDriftReport,
    quality: DataQualityReport,
    config: MonitoringConfig,
    notes: list[str],
) -> WindowEvaluation:
    """Regression: the predicted values' distribution, the labels' distribution, RMSE / MAE / interval
    coverage from labels against validation. The bias audit (rates of a positive class) does not apply."""
    values = np.array([float(row.prediction) for row in rows if isinstance(row.prediction, int | float)])
    prediction_drift = None
    if profile.predicted_values is None:
        notes.append("the reference profile has no predicted values: prediction drift not evaluated")
    else:
        prediction_drift = evaluate_value_drift(profile, values, config.drift)
    labelled = [row for row in rows if isinstance(row.label, int | float) and isinstance(row.prediction, int | float)]
    foreign = sum(1 for row in rows if row.label is not None) - len(labelled)
    if foreign:
        notes.append(f"{foreign} labels are not numbers and were left out")
    truth = np.array([float(row.label) for row in labelled])  # type: ignore[arg-type]
    label_drift = None
    if not labelled:
        notes.append("no labelled predictions in the window: label drift and performance not evaluated")
    elif profile.target_values is not None:
        label_drift = evaluate_target_drift(profile, truth, config.drift)
    with_interval = all(row.interval is not None for row in labelled)
    performance = evaluate_regression_performance(
        truth,
        [float(row.prediction) for row in labelled],
        intervals=np.array([row.interval for row in labelled]) if labelled and with_interval else None,
        reference_metrics={k: v for k, v in meta.metrics.items() if k in ("rmse", "mae", "interval_coverage")},
        config=config.performance,
    )
    regression_bias = None
    sensitive = meta.feature_schema.sensitive_names
    if sensitive and len(values) == len(rows) and rows:
        labels_by_id = {row.prediction_id: float(row.label) for row in labelled}  # type: ignore[arg-type]
        regression_bias = evaluate_regression_bias(
            {name: columns[name] for name in sensitive},
            values,
            threshold=config.bias.regression_threshold,
            min_group_size=config.bias.min_group_size,
            y_true=[labels_by_id.get(row.prediction_id) for row in rows],
        )
    elif not sensitive:
        notes.append("the schema marks no feature as sensitive: no bias audit")
    return WindowEvaluation(
        n_rows=len(rows),
        n_labelled=len(labelled),
        data_drift=data_drift,
        prediction_drift=prediction_drift,
        label_drift=label_drift,
        performance=performance,
        quality=quality,
        bias=None,
        bias_labelled=None,
        notes=notes,
        regression_bias=regression_bias,
    )


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def alerts(result: WindowEvaluation) -> dict[str, list[str]]:
    """What crossed a threshold, by kind: data_drift, performance, prediction_drift, label_drift, quality, bias."""
    out: dict[str, list[str]] = {}
    dd = result.data_drift
    if dd.verdict is DriftVerdict.drifted:
        names = ", ".join(f.name for f in dd.features if f.drifted)
        out["data_drift"] = [
            f"dataset drift: {dd.n_drifted} of {dd.n_evaluated} features drifted "
            f"({_pct(dd.share_drifted)} >= {_pct(dd.drift_share)}): {names}"
        ]
    perf = result.performance
    if perf.verdict is PerformanceVerdict.regressed:
        out["performance"] = [
            f"performance regression: {m.name} {_num(m.value)} ({perf.confidence:.0%} CI "
            f"[{_num(m.lower)}, {_num(m.upper)}], {perf.n_labelled} labels) vs validation {_num(m.reference)}"
            for m in perf.metrics
            if m.regressed
        ]
    pd = result.prediction_drift
    if pd is not None and pd.verdict is DriftVerdict.drifted:
        parts = [p for p in pd.parts if p.drifted]
        out["prediction_drift"] = [
            "prediction drift: "
            + ", ".join(f"{p.name} {p.method.value if p.method else ''} {_num(p.score)}" for p in parts)
        ]
    ld = result.label_drift
    if ld is not None and ld.verdict is DriftVerdict.drifted:
        out["label_drift"] = [f"label drift: {ld.method.value if ld.method else ''} {_num(ld.score)}"]
    if result.quality.flagged:
        out["quality"] = [f"data quality: {q.name}: {'; '.join(q.issues)}" for q in result.quality.features if q.issues]
    if result.regression_bias is not None and result.regression_bias.flagged:
        out.setdefault("bias", []).extend(
            f"bias: {a.attribute} mean prediction difference {_pct(a.mean_prediction_difference)}, "
            f"error difference {_pct(a.error_difference)} (threshold {_pct(result.regression_bias.threshold)})"
            for a in result.regression_bias.attributes
            if a.prediction_flagged or a.error_flagged
        )
    for report in (result.bias, result.bias_labelled):
        if report is not None and report.flagged:
            out.setdefault("bias", []).extend(
                f"bias: {a.attribute} parity difference {_num(a.demographic_parity_difference)}, "
                f"equal opportunity difference {_num(a.equal_opportunity_difference)}"
                for a in report.attributes
                if a.parity_flagged or a.opportunity_flagged
            )
    return out


def trigger_reasons(found: dict[str, list[str]], policy: TriggerPolicy) -> list[str]:
    """The alerts that, under ``policy``, call for a retraining."""
    kinds = [
        kind
        for kind, wanted in (
            ("data_drift", policy.on_data_drift),
            ("performance", policy.on_performance_regression),
            ("prediction_drift", policy.on_prediction_drift),
        )
        if wanted
    ]
    return [reason for kind in kinds for reason in found.get(kind, [])]


def insufficient(result: WindowEvaluation) -> bool:
    return (
        result.data_drift.verdict is DriftVerdict.insufficient_data
        and result.performance.verdict is PerformanceVerdict.insufficient_data
    )


def feature_scores(report: DataDriftReport) -> dict[str, float | None]:
    return {f.name: f.score for f in report.features}


def live_metrics(report: PerformanceReport) -> dict[str, Any]:
    return {m.name: m.value for m in report.metrics}
