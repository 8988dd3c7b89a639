"""Data, prediction and label drift of a current sample against a reference profile.

Default test choice follows the sample size of the reference, as Evidently does, so verdicts agree:
up to ``small_reference`` (1000) rows p-value tests (KS for numeric, chi-square for categorical,
two-proportion z-test for binary), above it distances with a 0.1 threshold (Wasserstein normalised by
the reference std for numeric, Jensen-Shannon for categorical and for numeric features with <= 5
values). With large samples p-values flag practically irrelevant shifts, which is why distances take
over. PSI is always reported with its own ok/warn/alert levels. Missing values are left out of the
tests and reported as data quality instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

import numpy as np
from pydantic import BaseModel, Field

from loopml.errors import InvalidInput
from loopml.schema import CATEGORY_MISSING
from loopml.statistics import stats
from loopml.statistics.profile import (
    CategoricalProfile,
    NumericProfile,
    ReferenceProfile,
    count_categories,
)

DISCRETE_MAX_VALUES = 5
DISPLAY_BINS = 20
DISPLAY_CATEGORIES = 20


class DriftVerdict(StrEnum):
    drifted = "drifted"
    no_drift = "no_drift"
    insufficient_data = "insufficient_data"


class DriftMethod(StrEnum):
    ks = "ks"
    chi_square = "chi_square"
    z_test = "z_test"
    wasserstein = "wasserstein"
    jensen_shannon = "jensen_shannon"
    psi = "psi"


P_VALUE_METHODS = frozenset({DriftMethod.ks, DriftMethod.chi_square, DriftMethod.z_test})
NUMERIC_METHODS = frozenset({DriftMethod.ks, DriftMethod.wasserstein, DriftMethod.psi})
CATEGORICAL_METHODS = frozenset(
    {DriftMethod.chi_square, DriftMethod.z_test, DriftMethod.jensen_shannon, DriftMethod.psi}
)


class PsiLevel(StrEnum):
    ok = "ok"
    warn = "warn"
    alert = "alert"


class FeatureDriftConfig(BaseModel, extra="forbid"):
    """Per-feature overrides; unset fields fall back to the dataset-level config."""

    method: DriftMethod | None = None
    threshold: float | None = Field(default=None, gt=0)
    psi_warn: float | None = Field(default=None, gt=0)
    psi_alert: float | None = Field(default=None, gt=0)
    enabled: bool = True


class DriftConfig(BaseModel, extra="forbid"):
    p_value_threshold: float = Field(default=0.05, gt=0, lt=1)
    distance_threshold: float = Field(default=0.1, gt=0)
    psi_threshold: float = Field(default=0.1, gt=0, description="threshold when PSI is chosen as the method")
    small_reference: int = Field(default=1000, ge=1, description="reference rows up to which p-value tests are used")
    psi_warn: float = Field(default=0.1, gt=0)
    psi_alert: float = Field(default=0.25, gt=0)
    drift_share: float = Field(default=0.5, gt=0, le=1)
    min_sample_size: int = Field(default=100, ge=1)
    per_feature: dict[str, FeatureDriftConfig] = Field(default_factory=dict)


class Histogram(BaseModel):
    """Shares for charts: numeric ones have ``edges`` (len + 1), categorical ones ``labels``."""

    edges: list[float] | None = None
    labels: list[str] | None = None
    reference: list[float]
    current: list[float]


class FeatureDrift(BaseModel):
    name: str
    kind: str
    method: DriftMethod | None = None
    score: float | None = None
    threshold: float | None = None
    drifted: bool = False
    verdict: DriftVerdict
    p_value: float | None = None
    statistic: float | None = Field(default=None, description="test statistic behind the p-value (KS D, chi2, z)")
    psi: float | None = None
    psi_level: PsiLevel | None = None
    ks_statistic: float | None = None
    wasserstein_normed: float | None = None
    jensen_shannon: float | None = None
    n_reference: int
    n_current: int = Field(description="non-missing current values")
    missing_rate_reference: float
    missing_rate_current: float | None = None
    out_of_range_rate: float | None = None
    unseen_category_rate: float | None = None
    unseen_categories: list[str] = Field(default_factory=list)
    mean_reference: float | None = None
    mean_current: float | None = None
    histogram: Histogram | None = None


class DataDriftReport(BaseModel):
    verdict: DriftVerdict
    n_reference: int
    n_current: int
    n_evaluated: int = Field(description="features with enough data to be tested")
    n_drifted: int
    share_drifted: float | None
    drift_share: float
    features: list[FeatureDrift]
    evaluated_at: str | None = None

    def feature(self, name: str) -> FeatureDrift:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)


class PredictionDriftReport(BaseModel):
    verdict: DriftVerdict
    predicted_class: FeatureDrift | None = None  # classification
    confidence: FeatureDrift | None = None
    predicted_value: FeatureDrift | None = None  # regression

    @property
    def parts(self) -> list[FeatureDrift]:
        return [p for p in (self.predicted_class, self.confidence, self.predicted_value) if p is not None]

    @property
    def headline(self) -> FeatureDrift | None:
        """The part that scores the predictions themselves: the class mix, or the values' distribution."""
        return self.predicted_class or self.predicted_value


def _finite(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None


def _psi_level(value: float, warn: float, alert: float) -> PsiLevel:
    return PsiLevel.alert if value >= alert else PsiLevel.warn if value >= warn else PsiLevel.ok


class _Settings:
    """The config resolved for one feature."""

    def __init__(self, config: DriftConfig, name: str) -> None:
        override = config.per_feature.get(name, FeatureDriftConfig())
        self.method = override.method
        self.threshold = override.threshold
        self.psi_warn = override.psi_warn or config.psi_warn
        self.psi_alert = override.psi_alert or config.psi_alert
        self.enabled = override.enabled
        self.config = config

    def threshold_for(self, method: DriftMethod) -> float:
        if self.threshold is not None:
            return self.threshold
        if method in P_VALUE_METHODS:
            return self.config.p_value_threshold
        if method is DriftMethod.psi:
            return self.config.psi_threshold
        return self.config.distance_threshold


def _decide(
    result: FeatureDrift, method: DriftMethod, scores: Mapping[DriftMethod, float | None], s: _Settings
) -> None:
    threshold = s.threshold_for(method)
    score = scores.get(method)
    result.method = method
    result.threshold = threshold
    result.score = _finite(score)
    if score is None:
        result.drifted = False
    elif method in P_VALUE_METHODS:
        result.drifted = bool(score < threshold)
    else:
        result.drifted = bool(score >= threshold)
    if result.n_current < s.config.min_sample_size or result.n_reference == 0:
        result.verdict = DriftVerdict.insufficient_data
        result.drifted = False
    else:
        result.verdict = DriftVerdict.drifted if result.drifted else DriftVerdict.no_drift


def _category_drift(
    name: str,
    ref_counts: Mapping[str, int],
    cur_counts: Mapping[str, int],
    n_ref_rows: int,
    s: _Settings,
    kind: str = "categorical",
) -> FeatureDrift:
    """Tests on category counts; missing values are excluded and only reported as rates."""
    ref_missing = ref_counts.get(CATEGORY_MISSING, 0)
    cur_missing = cur_counts.get(CATEGORY_MISSING, 0)
    keys = [k for k in ref_counts if k != CATEGORY_MISSING]
    unseen = sorted(k for k in cur_counts if k != CATEGORY_MISSING and k not in ref_counts)
    keys += unseen
    r = np.array([ref_counts.get(k, 0) for k in keys], dtype=np.float64)
    c = np.array([cur_counts.get(k, 0) for k in keys], dtype=np.float64)
    n_ref, n_cur = int(r.sum()), int(c.sum())
    cur_total = n_cur + cur_missing
    ref_total = n_ref + ref_missing
    chi2_stat, chi2_p = stats.chi_square(r, c)
    present = (r + c) > 0
    z_p: float | None = None
    z_stat: float | None = None
    if int(present.sum()) <= 2:
        first = sorted(k for k, p in zip(keys, present, strict=True) if p)[:1]
        k0 = keys.index(first[0]) if first else 0
        if keys:
            z_stat, z_p = stats.proportion_z_test(int(r[k0]), n_ref, int(c[k0]), n_cur)
    js = stats.jensen_shannon(r, c) if keys else 0.0
    psi = stats.psi_from_counts(r, c) if keys else 0.0
    result = FeatureDrift(
        name=name,
        kind=kind,
        verdict=DriftVerdict.no_drift,
        psi=_finite(psi),
        psi_level=_psi_level(psi, s.psi_warn, s.psi_alert),
        jensen_shannon=_finite(js),
        n_reference=n_ref,
        n_current=n_cur,
        missing_rate_reference=ref_missing / ref_total if ref_total else 0.0,
        missing_rate_current=cur_missing / cur_total if cur_total else None,
        unseen_category_rate=float(sum(cur_counts[k] for k in unseen) / cur_total) if cur_total else None,
        unseen_categories=unseen[:50],
    )
    method = s.method
    if method is None:
        if n_ref_rows > s.config.small_reference:
            method = DriftMethod.jensen_shannon
        else:
            method = DriftMethod.z_test if z_p is not None else DriftMethod.chi_square
    if method not in CATEGORICAL_METHODS:
        raise InvalidInput(f"drift method {method.value!r} does not apply to categorical feature {name!r}")
    if method is DriftMethod.z_test and z_p is None:
        raise InvalidInput(f"z_test needs a binary feature; {name!r} has {int(present.sum())} categories")
    if method is DriftMethod.chi_square:
        result.statistic = _finite(chi2_stat)
        result.p_value = _finite(chi2_p)
    elif method is DriftMethod.z_test:
        result.statistic = _finite(z_stat)
        result.p_value = _finite(z_p)
    scores = {
        DriftMethod.chi_square: chi2_p,
        DriftMethod.z_test: z_p,
        DriftMethod.jensen_shannon: js,
        DriftMethod.psi: psi,
    }
    _decide(result, method, scores, s)
    order = np.argsort(-(r / max(n_ref, 1) + c / max(n_cur, 1)), kind="stable")[:DISPLAY_CATEGORIES]
    result.histogram = Histogram(
        labels=[keys[i] for i in order],
        reference=[float(r[i] / n_ref) if n_ref else 0.0 for i in order],
        current=[float(c[i] / n_cur) if n_cur else 0.0 for i in order],
    )
    return result


def _coded_counts(codes: np.ndarray, categories: list[str]) -> dict[str, int]:
    """Integer codes index the profile's category list; -1 is missing, codes past the end are unseen."""
    codes = np.asarray(codes, dtype=np.int64)
    if codes.size and codes.min() < -1:
        raise InvalidInput("integer-coded categories must be >= -1 (-1 = missing)")
    binned = np.bincount(codes + 1)
    out: dict[str, int] = {}
    for i, count in enumerate(binned.tolist()):
        if count == 0:
            continue
        code = i - 1
        label = CATEGORY_MISSING if code < 0 else categories[code] if code < len(categories) else f"<code {code}>"
        out[label] = out.get(label, 0) + count
    return out


def _numeric_column(name: str, values: np.ndarray) -> tuple[np.ndarray, int]:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidInput(f"numeric feature {name!r} has non-numeric values") from None
    if arr.ndim != 1:
        raise InvalidInput(f"feature {name!r} must be a 1-D array, got shape {arr.shape}")
    missing = np.isnan(arr)
    n_missing = int(np.count_nonzero(missing))
    x = arr[~missing] if n_missing else arr
    if x.size and not np.isfinite(x.min() + x.max()):
        raise InvalidInput(f"numeric feature {name!r} has infinite values")
    return x, n_missing


def _display_histogram(
    prof: NumericProfile, f_ref: np.ndarray, f_cur: np.ndarray, cur_min: float, cur_max: float
) -> Histogram:
    """Equal-width shares interpolated from the grid ECDFs (charts only: no extra pass over the data)."""
    edges = np.asarray(prof.edges)
    lo = min(edges[0], cur_min)
    hi = max(edges[-1], cur_max)
    if hi <= lo:
        hi = lo + 1.0
    display = np.linspace(lo, hi, DISPLAY_BINS + 1)
    ref_cdf = np.interp(display, edges, f_ref, left=0.0, right=1.0)
    knots = np.concatenate([[min(cur_min, edges[0])], edges, [max(cur_max, edges[-1])]])
    cur_vals = np.concatenate([[0.0], f_cur, [1.0]])
    cur_cdf = np.interp(display, knots, cur_vals, left=0.0, right=1.0)
    return Histogram(
        edges=display.tolist(),
        reference=np.clip(np.diff(ref_cdf), 0, 1).tolist(),
        current=np.clip(np.diff(cur_cdf), 0, 1).tolist(),
    )


def _numeric_drift(name: str, prof: NumericProfile, values: np.ndarray, n_ref_rows: int, s: _Settings) -> FeatureDrift:
    x, n_missing = _numeric_column(name, values)
    total = x.size + n_missing
    missing_rate = n_missing / total if total else None
    if prof.distinct is not None and prof.distinct <= DISCRETE_MAX_VALUES and prof.n:
        return _discrete_numeric_drift(name, prof, x, n_missing, n_ref_rows, s)
    result = FeatureDrift(
        name=name,
        kind="numeric",
        verdict=DriftVerdict.no_drift,
        n_reference=prof.n,
        n_current=int(x.size),
        missing_rate_reference=prof.missing_rate,
        missing_rate_current=missing_rate,
        mean_reference=prof.mean,
    )
    if prof.n == 0 or x.size == 0:
        _decide(result, s.method or DriftMethod.wasserstein, {}, s)
        return result
    edges, ref_counts, ref_sums = prof.grid()
    cur_counts, cur_sums = stats.grid_reduce(edges, x)
    below = int(np.count_nonzero(x < edges[0]))
    above = int(cur_counts[-1])
    cur_min, cur_max = float(x.min()), float(x.max())
    ks = stats.ks_grid(edges, ref_counts, cur_counts, below)
    ks_p = stats.ks_pvalue(ks, prof.n, int(x.size))
    wass = stats.wasserstein_grid(
        edges, ref_counts, ref_sums, cur_counts, cur_sums, discrete=prof.distinct is not None
    ) / max(prof.std or 0, 1e-3)
    k = edges.size
    cum_ref = np.cumsum(ref_counts[:k])
    cum_cur = np.cumsum(cur_counts[:k])
    pos = np.searchsorted(edges, np.asarray(prof.psi_edges, dtype=np.float64))
    psi_ref = np.diff(np.concatenate([[0], cum_ref[pos], [prof.n]]))
    psi_cur = np.diff(np.concatenate([[0], cum_cur[pos], [x.size]]))
    psi = stats.psi_from_counts(psi_ref, psi_cur)
    result.psi = _finite(psi)
    result.psi_level = _psi_level(psi, s.psi_warn, s.psi_alert)
    result.ks_statistic = _finite(ks)
    result.wasserstein_normed = _finite(wass)
    result.out_of_range_rate = (below + above) / total
    result.mean_current = _finite(float(cur_sums.sum() / x.size))
    method = s.method or (DriftMethod.ks if n_ref_rows <= s.config.small_reference else DriftMethod.wasserstein)
    if method not in NUMERIC_METHODS:
        raise InvalidInput(f"drift method {method.value!r} does not apply to numeric feature {name!r}")
    if method is DriftMethod.ks:
        result.statistic = _finite(ks)
        result.p_value = _finite(ks_p)
    _decide(result, method, {DriftMethod.ks: ks_p, DriftMethod.wasserstein: wass, DriftMethod.psi: psi}, s)
    result.histogram = _display_histogram(prof, cum_ref / prof.n, cum_cur / x.size, cur_min, cur_max)
    return result


def _discrete_numeric_drift(
    name: str, prof: NumericProfile, x: np.ndarray, n_missing: int, n_ref_rows: int, s: _Settings
) -> FeatureDrift:
    """A numeric feature with a handful of values is tested as a categorical one (as Evidently does)."""
    edges = np.asarray(prof.edges)
    idx = np.minimum(np.searchsorted(edges, x, side="left"), edges.size - 1)
    hit = edges[idx] == x
    on_grid = np.bincount(idx[hit], minlength=edges.size)
    labels = [repr(float(v)) for v in edges]
    ref_counts = dict(zip(labels, prof.counts, strict=True))
    ref_counts[CATEGORY_MISSING] = prof.missing
    cur_counts = {label: int(c) for label, c in zip(labels, on_grid.tolist(), strict=True) if c}
    off = int(x.size - hit.sum())
    if off:
        cur_counts["<other value>"] = off
    if n_missing:
        cur_counts[CATEGORY_MISSING] = n_missing
    result = _category_drift(name, ref_counts, cur_counts, n_ref_rows, s, kind="numeric")
    result.unseen_category_rate = None
    result.unseen_categories = []
    result.out_of_range_rate = (
        float(np.count_nonzero((x < edges[0]) | (x > edges[-1])) / (x.size + n_missing)) if x.size else None
    )
    result.mean_reference = prof.mean
    result.mean_current = _finite(float(x.mean())) if x.size else None
    return result


def _check_config(profile: ReferenceProfile, config: DriftConfig) -> None:
    unknown = sorted(set(config.per_feature) - set(profile.features))
    if unknown:
        raise InvalidInput(
            f"drift config names features not in the profile: {unknown}; known: {sorted(profile.features)}"
        )


def _categorical_counts(name: str, prof: CategoricalProfile, values: np.ndarray) -> dict[str, int]:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise InvalidInput(f"feature {name!r} must be a 1-D array, got shape {arr.shape}")
    if arr.dtype.kind in "iu":
        return _coded_counts(arr, prof.categories)
    if arr.dtype.kind == "f":
        raise InvalidInput(
            f"categorical feature {name!r} got floats; pass strings, or integer codes into the profile's category list"
        )
    return count_categories(arr)


def evaluate_data_drift(
    profile: ReferenceProfile,
    current: Mapping[str, np.ndarray],
    config: DriftConfig | None = None,
    evaluated_at: str | None = None,
) -> DataDriftReport:
    """Compare current feature columns with the reference profile.

    ``current`` maps every profiled feature to a 1-D array: float64 with NaN for missing (numeric);
    strings (None/NaN missing) or integer codes into ``profile.features[name].categories`` (-1 missing)
    for categorical. Extra columns are ignored; features disabled in the config are left out of the report.
    """
    config = config or DriftConfig()
    _check_config(profile, config)
    absent = [name for name in profile.features if name not in current]
    if absent:
        raise InvalidInput(f"current data lacks profiled features: {absent}")
    lengths = {name: len(current[name]) for name in profile.features}
    n_current = max(lengths.values(), default=0)
    uneven = sorted(name for name, n in lengths.items() if n != n_current)
    if uneven:
        raise InvalidInput(f"current columns differ in length: {uneven} are not {n_current} long")
    results: list[FeatureDrift] = []
    for name, prof in profile.features.items():
        s = _Settings(config, name)
        if not s.enabled:
            continue
        if isinstance(prof, NumericProfile):
            results.append(_numeric_drift(name, prof, current[name], profile.n_rows, s))
        else:
            cur_counts = _categorical_counts(name, prof, current[name])
            results.append(_category_drift(name, prof.counts, cur_counts, profile.n_rows, s))
    evaluated = [r for r in results if r.verdict is not DriftVerdict.insufficient_data]
    n_drifted = sum(r.drifted for r in evaluated)
    share = n_drifted / len(evaluated) if evaluated else None
    if n_current < config.min_sample_size or share is None:
        verdict = DriftVerdict.insufficient_data
    else:
        verdict = DriftVerdict.drifted if share >= config.drift_share else DriftVerdict.no_drift
    return DataDriftReport(
        verdict=verdict,
        n_reference=profile.n_rows,
        n_current=n_current,
        n_evaluated=len(evaluated),
        n_drifted=n_drifted,
        share_drifted=share,
        drift_share=config.drift_share,
        features=results,
        evaluated_at=evaluated_at,
    )


def evaluate_prediction_drift(
    profile: ReferenceProfile,
    predicted: np.ndarray,
    confidence: np.ndarray | None = None,
    config: DriftConfig | None = None,
) -> PredictionDriftReport:
    """Predicted-class mix and confidence (max proba) against the training-time predictions."""
    config = config or DriftConfig()
    if profile.predictions is None:
        raise InvalidInput("the reference profile has no prediction distribution (built without proba)")
    ref = profile.predictions
    ref_counts = {str(c): n for c, n in zip(ref.classes, ref.counts, strict=True)}
    s = _Settings(config, "__prediction__")
    class_drift = _category_drift(
        "predicted_class", ref_counts, count_categories(np.asarray(predicted).astype(str)), profile.n_rows, s
    )
    conf_drift = None
    if confidence is not None:
        if len(confidence) != len(predicted):
            raise InvalidInput("confidence must have one value per prediction")
        conf_drift = _numeric_drift("confidence", ref.confidence, confidence, profile.n_rows, s)
    parts = [class_drift] + ([conf_drift] if conf_drift else [])
    if any(p.verdict is DriftVerdict.insufficient_data for p in parts):
        verdict = DriftVerdict.insufficient_data
    else:
        verdict = DriftVerdict.drifted if any(p.drifted for p in parts) else DriftVerdict.no_drift
    return PredictionDriftReport(verdict=verdict, predicted_class=class_drift, confidence=conf_drift)


def evaluate_value_drift(
    profile: ReferenceProfile, values: np.ndarray, config: DriftConfig | None = None
) -> PredictionDriftReport:
    """Regression: the distribution of the predicted values against the training-time predictions."""
    config = config or DriftConfig()
    if profile.predicted_values is None:
        raise InvalidInput("the reference profile has no predicted values (built without predictions)")
    s = _Settings(config, "__prediction__")
    drift = _numeric_drift("predicted_value", profile.predicted_values, np.asarray(values, float), profile.n_rows, s)
    return PredictionDriftReport(verdict=drift.verdict, predicted_value=drift)


def evaluate_target_drift(
    profile: ReferenceProfile, values: np.ndarray, config: DriftConfig | None = None
) -> FeatureDrift:
    """Regression: the distribution of the labels received as feedback against the training target."""
    config = config or DriftConfig()
    if profile.target_values is None:
        raise InvalidInput("the reference profile has no target distribution (built without labels)")
    return _numeric_drift(
        "label", profile.target_values, np.asarray(values, float), profile.n_rows, _Settings(config, "__label__")
    )


def evaluate_label_drift(
    profile: ReferenceProfile, labels: np.ndarray, config: DriftConfig | None = None
) -> FeatureDrift:
    """Class mix of the labels received as feedback against the training labels."""
    config = config or DriftConfig()
    if profile.labels is None:
        raise InvalidInput("the reference profile has no label distribution (built without labels)")
    cur = count_categories(np.asarray([str(v) for v in np.asarray(labels).tolist()], dtype=object))
    return _category_drift("label", profile.labels.counts, cur, profile.n_rows, _Settings(config, "__label__"))
