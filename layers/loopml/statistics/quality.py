"""Data quality of the current sample, read off a data drift report (no second pass over the data).

A feature is flagged when its missing rate rose significantly (two-proportion z-test) and by more than
``missing_increase``, when more than ``out_of_range_rate`` of its values fall outside the training range
or ``unseen_category_rate`` of them are categories never seen in training, or when requests were
rejected for it (type violations counted by the caller).
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, Field

from loopml.errors import InvalidInput
from loopml.statistics import stats
from loopml.statistics.engine import DataDriftReport


class QualityConfig(BaseModel, extra="forbid"):
    missing_increase: float = Field(default=0.05, ge=0)
    p_value_threshold: float = Field(default=0.01, gt=0, lt=1)
    out_of_range_rate: float = Field(default=0.01, ge=0)
    unseen_category_rate: float = Field(default=0.01, ge=0)


class FeatureQuality(BaseModel):
    name: str
    missing_rate_reference: float
    missing_rate_current: float | None
    missing_increase_significant: bool = False
    out_of_range_rate: float | None = None
    unseen_category_rate: float | None = None
    type_violations: int = 0
    issues: list[str] = Field(default_factory=list)


class DataQualityReport(BaseModel):
    n_current: int
    flagged: bool
    features: list[FeatureQuality]


def evaluate_data_quality(
    report: DataDriftReport,
    type_violations: Mapping[str, int] | None = None,
    config: QualityConfig | None = None,
) -> DataQualityReport:
    config = config or QualityConfig()
    violations = dict(type_violations or {})
    known = {f.name for f in report.features}
    unknown = sorted(set(violations) - known)
    if unknown:
        raise InvalidInput(f"type_violations names features not in the report: {unknown}")
    features = []
    for f in report.features:
        q = FeatureQuality(
            name=f.name,
            missing_rate_reference=f.missing_rate_reference,
            missing_rate_current=f.missing_rate_current,
            out_of_range_rate=f.out_of_range_rate,
            unseen_category_rate=f.unseen_category_rate,
            type_violations=int(violations.get(f.name, 0)),
        )
        if f.missing_rate_current is not None and report.n_current:
            n_ref = report.n_reference
            _, p = stats.proportion_z_test(
                round(f.missing_rate_reference * n_ref),
                n_ref,
                round(f.missing_rate_current * report.n_current),
                report.n_current,
            )
            increase = f.missing_rate_current - f.missing_rate_reference
            q.missing_increase_significant = increase > config.missing_increase and p < config.p_value_threshold
            if q.missing_increase_significant:
                q.issues.append(f"missing rate {f.missing_rate_reference:.1%} -> {f.missing_rate_current:.1%}")
        if (f.out_of_range_rate or 0) > config.out_of_range_rate:
            q.issues.append(f"{f.out_of_range_rate:.1%} of values outside the training range")
        if (f.unseen_category_rate or 0) > config.unseen_category_rate:
            q.issues.append(f"{f.unseen_category_rate:.1%} of values are unseen categories")
        if q.type_violations:
            q.issues.append(f"{q.type_violations} rejected values of the wrong type")
        features.append(q)
    return DataQualityReport(n_current=report.n_current, flagged=any(q.issues for q in features), features=features)
