"""Bias audit over sensitive attributes: selection rate, true positive rate and accuracy per group.

Demographic parity difference = max - min selection rate across groups; equal opportunity difference =
max - min true positive rate. Groups smaller than ``min_group_size`` are listed but left out of both
differences: a gap between a group of 5 and one of 5,000 is noise, not evidence.

Regression (``evaluate_regression_bias``): per group, the mean prediction and the mean absolute error;
their differences across groups are shares (of the mean prediction, of the overall error).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from pydantic import BaseModel, Field

from loopml.errors import InvalidInput
from loopml.schema import CATEGORY_MISSING


class BiasConfig(BaseModel, extra="forbid"):
    positive_class: str | int
    min_group_size: int = Field(default=30, ge=1)
    parity_threshold: float = Field(default=0.1, gt=0, le=1)
    opportunity_threshold: float = Field(default=0.1, gt=0, le=1)


class GroupMetrics(BaseModel):
    group: str
    n: int
    sufficient: bool
    selection_rate: float
    n_positive_labels: int | None = None
    true_positive_rate: float | None = None
    accuracy: float | None = None


class AttributeBias(BaseModel):
    attribute: str
    groups: list[GroupMetrics]
    demographic_parity_difference: float | None = None
    equal_opportunity_difference: float | None = None
    parity_flagged: bool = False
    opportunity_flagged: bool = False
    insufficient_data: bool = Field(default=False, description="fewer than two groups large enough to compare")


class BiasReport(BaseModel):
    positive_class: str
    flagged: bool
    attributes: list[AttributeBias]


def _as_text(values: np.ndarray | Sequence[object]) -> np.ndarray:
    out = []
    for v in np.asarray(values, dtype=object).tolist():
        if v is None or (isinstance(v, float) and v != v):
            out.append(CATEGORY_MISSING)
        else:
            out.append(str(v))
    return np.asarray(out, dtype=object)


def evaluate_bias(
    groups: Mapping[str, np.ndarray | Sequence[object]],
    y_pred: np.ndarray | Sequence[str | int],
    config: BiasConfig,
    y_true: np.ndarray | Sequence[str | int] | None = None,
) -> BiasReport:
    """Audit predictions (and labels, when given) for each sensitive attribute in ``groups``."""
    n = len(y_pred)
    positive = str(config.positive_class)
    pred_pos = _as_text(y_pred) == positive
    true_pos: np.ndarray | None = None
    if y_true is not None:
        if len(y_true) != n:
            raise InvalidInput(f"y_true has {len(y_true)} values but y_pred has {n}")
        truth = _as_text(y_true)
        true_pos = truth == positive
        correct = truth == _as_text(y_pred)
    attributes = []
    for attribute, values in groups.items():
        if len(values) != n:
            raise InvalidInput(f"sensitive attribute {attribute!r} has {len(values)} values, expected {n}")
        labels = _as_text(values)
        results = []
        for group in sorted(set(labels.tolist())):
            mask = labels == group
            size = int(mask.sum())
            gm = GroupMetrics(
                group=group,
                n=size,
                sufficient=size >= config.min_group_size,
                selection_rate=float(pred_pos[mask].mean()),
            )
            if true_pos is not None:
                positives = true_pos & mask
                gm.n_positive_labels = int(positives.sum())
                gm.accuracy = float(correct[mask].mean())
                if gm.n_positive_labels:
                    gm.true_positive_rate = float(pred_pos[positives].mean())
            results.append(gm)
        result = AttributeBias(attribute=attribute, groups=results)
        usable = [g for g in results if g.sufficient]
        if len(usable) < 2:
            result.insufficient_data = True
        else:
            rates = [g.selection_rate for g in usable]
            result.demographic_parity_difference = max(rates) - min(rates)
            result.parity_flagged = result.demographic_parity_difference > config.parity_threshold
            tprs = [g.true_positive_rate for g in usable if g.true_positive_rate is not None]
            if len(tprs) >= 2:
                result.equal_opportunity_difference = max(tprs) - min(tprs)
                result.opportunity_flagged = result.equal_opportunity_difference > config.opportunity_threshold
        attributes.append(result)
    flagged = any(a.parity_flagged or a.opportunity_flagged for a in attributes)
    return BiasReport(positive_class=positive, flagged=flagged, attributes=attributes)


class RegressionGroup(BaseModel):
    group: str
    n: int
    sufficient: bool
    mean_prediction: float
    n_labelled: int = 0
    mean_absolute_error: float | None = None


class RegressionAttributeBias(BaseModel):
    attribute: str
    groups: list[RegressionGroup]
    mean_prediction_difference: float | None = Field(default=None, description="max - min, as a share of the mean")
    error_difference: float | None = Field(default=None, description="max - min MAE, as a share of the overall MAE")
    prediction_flagged: bool = False
    error_flagged: bool = False
    insufficient_data: bool = Field(default=False, description="fewer than two groups large enough to compare")


class RegressionBiasReport(BaseModel):
    flagged: bool
    threshold: float
    attributes: list[RegressionAttributeBias]


def evaluate_regression_bias(
    groups: Mapping[str, np.ndarray | Sequence[object]],
    y_pred: np.ndarray | Sequence[float],
    threshold: float = 0.1,
    min_group_size: int = 30,
    y_true: np.ndarray | Sequence[float | None] | None = None,
) -> RegressionBiasReport:
    """Regression: per group, the mean prediction and (where labelled) the mean absolute error.

    Both differences (max - min across the groups large enough to compare) are relative, to the mean
    |prediction| and to the overall MAE, so one ``threshold`` (a share, 0.1 = 10%) fits any target's units.
    """
    predicted = np.asarray(y_pred, dtype=np.float64)
    n = len(predicted)
    truth = None
    if y_true is not None:
        if len(y_true) != n:
            raise InvalidInput(f"y_true has {len(y_true)} values but y_pred has {n}")
        truth = np.asarray([np.nan if v is None else float(v) for v in y_true], dtype=np.float64)
    scale = float(np.mean(np.abs(predicted))) if n else 0.0
    error = np.abs(truth - predicted) if truth is not None else None
    labelled = ~np.isnan(truth) if truth is not None else np.zeros(n, dtype=bool)
    overall_mae = float(error[labelled].mean()) if error is not None and labelled.any() else None
    attributes = []
    for attribute, values in groups.items():
        if len(values) != n:
            raise InvalidInput(f"sensitive attribute {attribute!r} has {len(values)} values, expected {n}")
        names = _as_text(values)
        found = []
        for group in sorted(set(names.tolist())):
            mask = names == group
            with_label = mask & labelled
            found.append(
                RegressionGroup(
                    group=group,
                    n=int(mask.sum()),
                    sufficient=int(mask.sum()) >= min_group_size,
                    mean_prediction=float(predicted[mask].mean()),
                    n_labelled=int(with_label.sum()),
                    mean_absolute_error=float(error[with_label].mean())
                    if error is not None and with_label.any()
                    else None,
                )
            )
        result = RegressionAttributeBias(attribute=attribute, groups=found)
        usable = [g for g in found if g.sufficient]
        if len(usable) < 2:
            result.insufficient_data = True
        else:
            means = [g.mean_prediction for g in usable]
            if scale > 0:
                result.mean_prediction_difference = (max(means) - min(means)) / scale
                result.prediction_flagged = result.mean_prediction_difference > threshold
            maes = [
                g.mean_absolute_error
                for g in usable
                if g.mean_absolute_error is not None and g.n_labelled >= min_group_size
            ]
            if len(maes) >= 2 and overall_mae:
                result.error_difference = (max(maes) - min(maes)) / overall_mae
                result.error_flagged = result.error_difference > threshold
        attributes.append(result)
    flagged = any(a.prediction_flagged or a.error_flagged for a in attributes)
    return RegressionBiasReport(flagged=flagged, threshold=threshold, attributes=attributes)
