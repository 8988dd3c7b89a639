"""The promotion gate: challenger and champion scored on the same rows, recent and trusted.

Two sets of rows: the recent holdout (the newest slice of the prepared data, labels from the API
included) and the golden set (the champion's own validation rows and reviewer-labelled rows: labels
that nobody can change through ``POST /feedback``). On each, the challenger may lose at most
``tolerance`` (recent) or ``golden_tolerance`` (golden) of the primary metric, and its log loss, a
proper scoring rule, may rise by at most ``log_loss_tolerance``: a model whose ranking survives but
whose probabilities collapse (a near-constant model) is stopped here, before it serves traffic. No bias
gap may cross ``bias_threshold``: for every sensitive feature of the schema, its selection-rate gap
(demographic parity) and its true-positive-rate gap (equal opportunity) across groups. A gap above
the threshold blocks the challenger unless the champion's gap on the same rows is as large (within
``bias_tolerance``): retraining must not make bias worse, and a champion that is already over the
line should not freeze its own replacement. Groups too small to compare are reported but do not
block (see ``loopml.statistics.bias``).

Regression: the primary metric is RMSE by default, and a tolerance on RMSE or MAE is a share of the
champion's (they are in the target's units); there is no log-loss check, and the bias gaps are the groups'
differences in mean prediction and in mean absolute error, as shares (``evaluate_regression_bias``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from loopml.errors import InsufficientData, InvalidInput
from loopml.retrain.models import (
    LOWER_IS_BETTER,
    REGRESSION_METRICS,
    RELATIVE_TOLERANCE,
    BiasSummary,
    Evaluation,
    PrimaryMetric,
)
from loopml.schema import FeatureSchema, encode_targets, to_matrix
from loopml.statistics.bias import BiasConfig, BiasReport, evaluate_bias, evaluate_regression_bias
from loopml.training import evaluate


def _bias(
    pipeline: Any,
    matrix: Any,
    labels: Sequence[Any],
    holdout: Mapping[str, Sequence[Any]],
    schema: FeatureSchema,
    threshold: float,
) -> BiasSummary:
    if not schema.sensitive_names:
        return BiasSummary(flagged=False, insufficient_data=False)
    groups = {name: list(holdout[name]) for name in schema.sensitive_names}
    if schema.regression:  # the gaps in mean prediction and in error, as shares, in the same two slots
        found = evaluate_regression_bias(groups, pipeline.predict(matrix), threshold, y_true=list(labels))
        return BiasSummary(
            flagged=found.flagged,
            insufficient_data=all(a.insufficient_data for a in found.attributes),
            parity_difference={a.attribute: a.mean_prediction_difference for a in found.attributes},
            opportunity_difference={a.attribute: a.error_difference for a in found.attributes},
        )
    config = BiasConfig(positive_class=schema.classes[-1], parity_threshold=threshold, opportunity_threshold=threshold)
    predicted = list(pipeline.predict(matrix))
    report: BiasReport = evaluate_bias(groups, predicted, config, y_true=list(labels))
    return BiasSummary(
        flagged=report.flagged,
        insufficient_data=all(a.insufficient_data for a in report.attributes),
        parity_difference={a.attribute: a.demographic_parity_difference for a in report.attributes},
        opportunity_difference={a.attribute: a.equal_opportunity_difference for a in report.attributes},
    )


_REGRESSION_GAPS = {"parity_difference": "mean prediction difference", "opportunity_difference": "error difference"}


def _scores(
    challenger: Any,
    champion: Any,
    rows: Mapping[str, Sequence[Any]],
    schema: FeatureSchema,
    intervals: tuple[Mapping[str, float] | None, Mapping[str, float] | None],
) -> tuple[dict[str, Any], dict[str, Any]]:
    labels = encode_targets(rows[schema.target], schema)
    matrix = to_matrix(rows, schema)
    return evaluate(challenger, matrix, labels, schema, intervals[0]).model_dump(), evaluate(
        champion, matrix, labels, schema, intervals[1]
    ).model_dump()


def primary_for(schema: FeatureSchema, asked: PrimaryMetric | None) -> PrimaryMetric:
    """The run's primary metric, or the task's default; one of the other task's is refused by name."""
    if asked is None:
        return "rmse" if schema.regression else "roc_auc"
    if (asked in REGRESSION_METRICS) != schema.regression:
        kind, fits = (
            ("regressor", "rmse, mae or r2")
            if schema.regression
            else ("classifier", "roc_auc, accuracy, f1_macro or log_loss")
        )
        raise InvalidInput(
            f"primary_metric {asked} does not fit this model: it is a {kind}; use {fits}",
            [{"loc": ["primary_metric"], "msg": f"not a {kind}'s metric", "type": "value_error"}],
        )
    return asked


def _regressions(
    where: str,
    new: dict[str, Any],
    old: dict[str, Any],
    primary_metric: PrimaryMetric,
    tolerance: float,
    log_loss_tolerance: float,
) -> tuple[float | None, list[str]]:
    """(sign-adjusted primary improvement, reasons) on one set of rows."""
    reasons = []
    improvement: float | None = None
    if all(isinstance(v, int | float) and math.isfinite(v) for v in (new[primary_metric], old[primary_metric])):
        improvement = float(new[primary_metric]) - float(old[primary_metric])
        if primary_metric in LOWER_IS_BETTER:
            improvement = -improvement
        if primary_metric in RELATIVE_TOLERANCE:
            tolerance *= abs(float(old[primary_metric]))
        if improvement < -tolerance:
            reasons.append(
                f"{primary_metric} on the {where} regressed by {-improvement:.4f} (challenger "
                f"{new[primary_metric]:.4f}, champion {old[primary_metric]:.4f}; tolerance {tolerance})"
            )
    if "log_loss" not in new:  # regression: no probabilities to collapse
        return improvement, reasons
    rise = float(new["log_loss"]) - float(old["log_loss"])
    if primary_metric != "log_loss" and rise > log_loss_tolerance:
        reasons.append(
            f"log_loss on the {where} rose by {rise:.4f} (challenger {new['log_loss']:.4f}, champion "
            f"{old['log_loss']:.4f}; tolerance {log_loss_tolerance}): its probabilities got worse"
        )
    return improvement, reasons


def gate(
    challenger: Any,
    champion: Any,
    holdout: Mapping[str, Sequence[Any]],
    schema: FeatureSchema,
    primary_metric: PrimaryMetric | None,
    tolerance: float,
    bias_threshold: float,
    bias_tolerance: float = 0.02,
    golden: Mapping[str, Sequence[Any]] | None = None,
    golden_tolerance: float = 0.03,
    log_loss_tolerance: float = 0.05,
    intervals: tuple[Mapping[str, float] | None, Mapping[str, float] | None] = (None, None),
) -> Evaluation:
    """Score both pipelines and decide; ``reasons`` says why a challenger was held back. ``intervals``:
    the (challenger, champion) bundles' prediction intervals, for a regression's coverage."""
    primary_metric = primary_for(schema, primary_metric)
    labels = encode_targets(holdout[schema.target], schema)
    matrix = to_matrix(holdout, schema)
    new, old = _scores(challenger, champion, holdout, schema, intervals)
    improvement, reasons = _regressions("recent holdout", new, old, primary_metric, tolerance, log_loss_tolerance)
    if improvement is None:
        raise InsufficientData(f"{primary_metric} cannot be computed on the holdout ({len(labels)} rows)")
    golden_new: dict[str, Any] = {}
    golden_old: dict[str, Any] = {}
    golden_rows = len(golden[schema.target]) if golden else 0
    if golden and golden_rows:
        golden_new, golden_old = _scores(challenger, champion, golden, schema, intervals)
        reasons += _regressions(
            "golden set", golden_new, golden_old, primary_metric, golden_tolerance, log_loss_tolerance
        )[1]
    challenger_bias = _bias(challenger, matrix, labels, holdout, schema, bias_threshold)
    champion_bias = _bias(champion, matrix, labels, holdout, schema, bias_threshold)
    for kind in ("parity_difference", "opportunity_difference"):
        new_gaps, old_gaps = getattr(challenger_bias, kind), getattr(champion_bias, kind)
        for attribute, gap in new_gaps.items():
            baseline = old_gaps.get(attribute)
            if gap is not None and gap > bias_threshold and (baseline is None or gap > baseline + bias_tolerance):
                what = _REGRESSION_GAPS[kind] if schema.regression else kind.replace("_", " ")
                reasons.append(
                    f"{attribute}: {what} {gap:.3f} above {bias_threshold} "
                    f"(champion {'n/a' if baseline is None else f'{baseline:.3f}'})"
                )
    return Evaluation(
        passed=not reasons,
        primary_metric=primary_metric,
        tolerance=tolerance,
        holdout_rows=len(labels),
        challenger=new,
        champion=old,
        improvement=round(improvement, 6),
        challenger_bias=challenger_bias,
        champion_bias=champion_bias,
        reasons=reasons,
        golden_rows=golden_rows,
        golden_challenger=golden_new,
        golden_champion=golden_old,
    )
