"""Live performance from labelled feedback, compared with validation metrics through confidence intervals.

A few dozen labels give a wide interval, so a lower point estimate alone is not a regression: a metric
regresses only when the validation value lies outside the interval by more than ``tolerance`` (above the
upper bound for metrics where higher is better, below the lower bound for ECE). Accuracy uses the Wilson
score interval; macro F1, ROC AUC and ECE use a seeded percentile bootstrap (deterministic reports).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum

import numpy as np
from pydantic import BaseModel, Field

from loopml.errors import InvalidInput

METRIC_ALIASES = {
    "macro_f1": "f1_macro",
    "f1": "f1_macro",
    "auc": "roc_auc",
    "roc_auc_ovr": "roc_auc",
    "calibration_error": "ece",
    "expected_calibration_error": "ece",
}
LOWER_IS_BETTER = frozenset({"ece"})
ECE_BINS = 10


class PerformanceVerdict(StrEnum):
    regressed = "regressed"
    ok = "ok"
    insufficient_data = "insufficient_data"


class PerformanceConfig(BaseModel, extra="forbid"):
    confidence: float = Field(default=0.95, gt=0, lt=1)
    tolerance: float = Field(default=0.01, ge=0, description="margin beyond the CI bound before calling a regression")
    bootstrap_samples: int = Field(default=300, ge=20)
    seed: int = 0
    min_labels: int = Field(default=20, ge=1)


class MetricEstimate(BaseModel):
    name: str
    value: float | None
    lower: float | None = None
    upper: float | None = None
    interval: str = Field(description="wilson or bootstrap")
    reference: float | None = None
    higher_is_better: bool = True
    regressed: bool = False


class PerformanceReport(BaseModel):
    verdict: PerformanceVerdict
    n_labelled: int
    confidence: float
    metrics: list[MetricEstimate]

    def metric(self, name: str) -> MetricEstimate:
        for m in self.metrics:
            if m.name == name:
                return m
        raise KeyError(name)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion: sensible bounds even at 0/n, n/n and small n."""
    from scipy.special import ndtri

    if n == 0:
        return 0.0, 1.0
    z = float(ndtri(0.5 + confidence / 2))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """Macro F1 over the classes present in labels or predictions (as scikit-learn does)."""
    cm = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(n_classes, -1)
    tp = np.diag(cm).astype(float)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    present = (support + predicted) > 0
    denom = support + predicted
    f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    return float(f1[present].mean()) if present.any() else 0.0


def _binary_auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    from scipy.stats import rankdata

    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_auc(y_true: np.ndarray, proba: np.ndarray) -> float | None:
    """Binary AUC on the second class's probability; one-vs-rest macro average for more classes."""
    if proba.shape[1] == 2:
        return _binary_auc(proba[:, 1], y_true == 1)
    aucs = [_binary_auc(proba[:, k], y_true == k) for k in range(proba.shape[1])]
    valid = [a for a in aucs if a is not None]
    return float(np.mean(valid)) if valid else None


def expected_calibration_error(y_true: np.ndarray, proba: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE over equal-width confidence bins: sum of |accuracy - confidence| weighted by bin share."""
    confidence = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y_true).astype(float)
    b = np.minimum((confidence * bins).astype(int), bins - 1)
    acc = np.bincount(b, weights=correct, minlength=bins)
    conf = np.bincount(b, weights=confidence, minlength=bins)
    return float(np.sum(np.abs(acc - conf)) / confidence.size)


def _encode(values: Sequence[str | int] | np.ndarray, classes: Sequence[str | int], what: str) -> np.ndarray:
    index = {str(c): i for i, c in enumerate(classes)}
    out = np.empty(len(values), dtype=np.int64)
    unknown: set[str] = set()
    for i, v in enumerate(np.asarray(values, dtype=object).tolist()):
        code = index.get(str(v))
        if code is None:
            unknown.add(str(v))
            code = 0
        out[i] = code
    if unknown:
        raise InvalidInput(f"{what} has values that are not model classes: {sorted(unknown)[:10]}")
    return out


def _bootstrap(
    fn: Callable[[np.ndarray], float | None], n: int, config: PerformanceConfig
) -> tuple[float | None, float | None]:
    rng = np.random.default_rng(config.seed)
    values = []
    for _ in range(config.bootstrap_samples):
        v = fn(rng.integers(0, n, n))
        if v is not None:
            values.append(v)
    if len(values) < config.bootstrap_samples // 2:
        return None, None
    alpha = (1 - config.confidence) / 2
    lo, hi = np.quantile(values, [alpha, 1 - alpha])
    return float(lo), float(hi)


def _judge(m: MetricEstimate, tolerance: float) -> None:
    if m.reference is None or m.lower is None or m.upper is None:
        return
    if m.higher_is_better:
        m.regressed = m.reference > m.upper + tolerance
    else:
        m.regressed = m.reference < m.lower - tolerance


def evaluate_performance(
    y_true: Sequence[str | int] | np.ndarray,
    y_pred: Sequence[str | int] | np.ndarray,
    classes: Sequence[str | int],
    proba: np.ndarray | None = None,
    reference_metrics: Mapping[str, float | None] | None = None,
    config: PerformanceConfig | None = None,
) -> PerformanceReport:
    """Accuracy, macro F1, ROC AUC and ECE (the last two need ``proba``, columns in ``classes`` order).

    ``reference_metrics`` are the validation metrics of the model version, keyed ``accuracy``,
    ``f1_macro`` (or ``macro_f1``), ``roc_auc`` (or ``auc``) and ``ece`` (or ``calibration_error``);
    other keys and None values are ignored.
    """
    config = config or PerformanceConfig()
    if len(y_true) != len(y_pred):
        raise InvalidInput(f"y_true has {len(y_true)} labels but y_pred has {len(y_pred)} predictions")
    if len(classes) < 2:
        raise InvalidInput("classes must list at least two classes")
    reference = {
        METRIC_ALIASES.get(k, k): float(v)
        for k, v in (reference_metrics or {}).items()
        if isinstance(v, int | float) and math.isfinite(v)
    }
    n = len(y_true)
    if n < config.min_labels:
        return PerformanceReport(
            verdict=PerformanceVerdict.insufficient_data,
            n_labelled=n,
            confidence=config.confidence,
            metrics=[],
        )
    t = _encode(y_true, classes, "y_true")
    p = _encode(y_pred, classes, "y_pred")
    k = len(classes)
    correct = int((t == p).sum())
    lo, hi = wilson_interval(correct, n, config.confidence)
    metrics = [
        MetricEstimate(name="accuracy", value=correct / n, lower=lo, upper=hi, interval="wilson"),
    ]
    f1_lo, f1_hi = _bootstrap(lambda i: macro_f1(t[i], p[i], k), n, config)
    metrics.append(
        MetricEstimate(name="f1_macro", value=macro_f1(t, p, k), lower=f1_lo, upper=f1_hi, interval="bootstrap")
    )
    if proba is not None:
        pr = np.asarray(proba, dtype=np.float64)
        if pr.shape != (n, k):
            raise InvalidInput(f"proba must have shape ({n}, {k}) (labelled rows x classes), got {pr.shape}")
        auc = roc_auc(t, pr)
        auc_lo, auc_hi = _bootstrap(lambda i: roc_auc(t[i], pr[i]), n, config) if auc is not None else (None, None)
        metrics.append(MetricEstimate(name="roc_auc", value=auc, lower=auc_lo, upper=auc_hi, interval="bootstrap"))
        ece_lo, ece_hi = _bootstrap(lambda i: expected_calibration_error(t[i], pr[i]), n, config)
        metrics.append(
            MetricEstimate(
                name="ece",
                value=expected_calibration_error(t, pr),
                lower=ece_lo,
                upper=ece_hi,
                interval="bootstrap",
                higher_is_better=False,
            )
        )
    for m in metrics:
        m.reference = reference.get(m.name)
        _judge(m, config.tolerance)
    verdict = PerformanceVerdict.regressed if any(m.regressed for m in metrics) else PerformanceVerdict.ok
    return PerformanceReport(verdict=verdict, n_labelled=n, confidence=config.confidence, metrics=metrics)


def evaluate_regression_performance(
    y_true: Sequence[float] | np.ndarray,
    y_pred: Sequence[float] | np.ndarray,
    intervals: np.ndarray | None = None,
    reference_metrics: Mapping[str, float | None] | None = None,
    config: PerformanceConfig | None = None,
) -> PerformanceReport:
    """RMSE and MAE (bootstrap intervals) and, given the served ``intervals`` (rows x [lower, upper]), the
    share of labels inside them (Wilson), against the version's validation metrics of the same names."""
    config = config or PerformanceConfig()
    t, p = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    if t.shape != p.shape:
        raise InvalidInput(f"y_true has {len(t)} values but y_pred has {len(p)} predictions")
    n = len(t)
    if n < config.min_labels:
        return PerformanceReport(
            verdict=PerformanceVerdict.insufficient_data, n_labelled=n, confidence=config.confidence, metrics=[]
        )
    error = t - p

    def rmse(i: np.ndarray) -> float:
        return float(np.sqrt(np.mean(error[i] ** 2)))

    def mae(i: np.ndarray) -> float:
        return float(np.mean(np.abs(error[i])))

    every = np.arange(n)
    metrics = []
    for name, fn in (("rmse", rmse), ("mae", mae)):
        lo, hi = _bootstrap(fn, n, config)
        metrics.append(
            MetricEstimate(name=name, value=fn(every), lower=lo, upper=hi, interval="bootstrap", higher_is_better=False)
        )
    if intervals is not None:
        bounds = np.asarray(intervals, dtype=np.float64)
        inside = int(((bounds[:, 0] <= t) & (t <= bounds[:, 1])).sum())
        lo, hi = wilson_interval(inside, n, config.confidence)
        metrics.append(
            MetricEstimate(name="interval_coverage", value=inside / n, lower=lo, upper=hi, interval="wilson")
        )
    reference = {k: float(v) for k, v in (reference_metrics or {}).items() if isinstance(v, int | float)}
    for m in metrics:
        m.reference = reference.get(m.name)
        _judge(m, config.tolerance)
    verdict = PerformanceVerdict.regressed if any(m.regressed for m in metrics) else PerformanceVerdict.ok
    return PerformanceReport(verdict=verdict, n_labelled=n, confidence=config.confidence, metrics=metrics)
