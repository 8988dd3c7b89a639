"""Judging a canary on evidence: the new version against the champion over the same bake window.

Every comparison knows its sample size. Each metric is a difference (canary worse by how much) with a
one-sided 95% confidence bound:

- error rate (Lambda errors per invocation) and degraded share (degraded answers per prediction):
  difference of proportions, Agresti-Caffo interval (one success and one failure added per side, so
  zero counts behave);
- mean confidence: Welch interval on the per-prediction confidences from the captured dataset;
- online accuracy, once ``min_labels`` labelled predictions arrived: both models score the same
  labelled rows, so the difference is paired (McNemar's discordant pairs);
- p99 latency and the answer rate (predictions per invocation) have no sampling distribution here and
  stay rules with margins.

The decision, in order:

1. **roll back** when an alarm fires, or any difference is worse than its margin with 95% confidence
   (the lower bound is past the margin), or a latency / answer-rate rule is broken;
2. **extend** the bake when the canary or the champion served fewer than ``min_predictions``, or when
   some difference cannot yet be shown to be within its margin (the upper bound is past it);
3. **inconclusive** instead of extending once the bake reached ``max_bake_minutes``: the champion keeps
   serving and the challenger is not promoted;
4. **promote** only when every measured difference is shown within its margin (non-inferiority) on
   enough predictions. No traffic is never evidence of health.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from loopml.retrain.models import CanaryPolicy, Comparison, OnlineAccuracy, Verdict, VersionMetrics

Z = 1.6448536269514722  # one-sided 95%


def proportion_difference(bad_a: float, n_a: float, bad_b: float, n_b: float) -> tuple[float, float, float]:
    """(estimate, lower, upper) of p_a - p_b, Agresti-Caffo adjusted."""
    pa, pb = (bad_a + 1) / (n_a + 2), (bad_b + 1) / (n_b + 2)
    se = math.sqrt(pa * (1 - pa) / (n_a + 2) + pb * (1 - pb) / (n_b + 2))
    estimate = (bad_a / n_a if n_a else 0.0) - (bad_b / n_b if n_b else 0.0)
    centre = pa - pb
    return estimate, centre - Z * se, centre + Z * se


def mean_difference(
    mean_a: float, std_a: float, n_a: float, mean_b: float, std_b: float, n_b: float
) -> tuple[float, float, float]:
    """(estimate, lower, upper) of mean_a - mean_b, Welch."""
    se = math.sqrt((std_a**2) / max(n_a, 1) + (std_b**2) / max(n_b, 1))
    estimate = mean_a - mean_b
    return estimate, estimate - Z * se, estimate + Z * se


def paired_difference(champion_only: int, canary_only: int, n: int) -> tuple[float, float, float]:
    """(estimate, lower, upper) of accuracy(champion) - accuracy(canary) on the same n rows.

    ``champion_only``: rows only the champion got right; ``canary_only``: only the canary. One
    pseudo-observation is added to each discordant cell so that zero discordance is not certainty.
    """
    b, c = champion_only + 0.5, canary_only + 0.5
    estimate = (champion_only - canary_only) / n
    centre = (b - c) / n
    se = math.sqrt(max((b + c) / n**2 - (b - c) ** 2 / n**3, 1e-12))
    return estimate, centre - Z * se, centre + Z * se


def _compare(name: str, estimate: float, lower: float, upper: float, margin: float, n: str) -> Comparison:
    worse = lower > margin
    shown = upper <= margin
    return Comparison(
        metric=name,
        canary_worse_by=round(estimate, 6),
        lower=round(lower, 6),
        upper=round(upper, 6),
        margin=margin,
        samples=n,
        worse=worse,
        non_inferior=shown,
    )


def compare(
    canary: VersionMetrics, champion: VersionMetrics, accuracy: OnlineAccuracy | None, policy: CanaryPolicy
) -> list[Comparison]:
    """Every difference that has data on both sides."""
    out: list[Comparison] = []
    if canary.invocations and champion.invocations:
        out.append(
            _compare(
                "error_rate",
                *proportion_difference(canary.errors, canary.invocations, champion.errors, champion.invocations),
                policy.max_error_rate_increase,
                f"{canary.invocations:.0f} vs {champion.invocations:.0f} invocations",
            )
        )
    if canary.predictions and champion.predictions:
        out.append(
            _compare(
                "degraded_share",
                *proportion_difference(canary.degraded, canary.predictions, champion.degraded, champion.predictions),
                policy.max_degraded_rate_increase,
                f"{canary.predictions:.0f} vs {champion.predictions:.0f} predictions",
            )
        )
    if (
        canary.mean_confidence is not None
        and champion.mean_confidence is not None
        and canary.confidence_std is not None
        and champion.confidence_std is not None
        and canary.captured
        and champion.captured
    ):
        out.append(
            _compare(
                "confidence_drop",
                *mean_difference(
                    champion.mean_confidence,
                    champion.confidence_std,
                    champion.captured,
                    canary.mean_confidence,
                    canary.confidence_std,
                    canary.captured,
                ),
                policy.max_confidence_drop,
                f"{canary.captured:.0f} vs {champion.captured:.0f} captured predictions",
            )
        )
    if accuracy is not None and accuracy.labels >= policy.min_labels and accuracy.discordant is not None:
        champion_only, canary_only = accuracy.discordant
        out.append(
            _compare(
                "accuracy_drop",
                *paired_difference(champion_only, canary_only, accuracy.labels),
                policy.max_accuracy_drop,
                f"{accuracy.labels} labelled predictions",
            )
        )
    return out


def judge(
    canary: VersionMetrics,
    champion: VersionMetrics,
    alarms_firing: Sequence[str],
    accuracy: OnlineAccuracy | None,
    policy: CanaryPolicy,
    baked_minutes: float,
    max_bake_minutes: float,
) -> Verdict:
    comparisons = compare(canary, champion, accuracy, policy)
    harm = [f"alarm {name} is in ALARM" for name in alarms_firing]
    for c in comparisons:
        if c.worse:
            harm.append(
                f"{c.metric}: canary worse by {c.canary_worse_by:.4f} (95% bound {c.lower:.4f} > margin {c.margin}; "
                f"{c.samples})"
            )
    if canary.invocations >= policy.min_invocations and champion.invocations and champion.predictions:
        new_rate = canary.predictions / canary.invocations
        old_rate = champion.predictions / champion.invocations
        if new_rate < policy.min_answer_ratio * old_rate:
            harm.append(
                f"answer rate {new_rate:.2f} predictions per invocation vs champion {old_rate:.2f} "
                f"({canary.invocations:.0f} canary invocations)"
            )
    new_p99, old_p99 = canary.latency_p99_ms, champion.latency_p99_ms
    if (
        new_p99 is not None
        and old_p99 is not None
        and new_p99 > old_p99 * policy.max_latency_ratio
        and new_p99 - old_p99 > policy.min_latency_increase_ms
    ):
        harm.append(f"p99 latency {new_p99:.1f} ms vs champion {old_p99:.1f} ms")

    missing: list[str] = []
    for side, metrics in (("canary", canary), ("champion", champion)):
        if metrics.predictions < policy.min_predictions:
            missing.append(f"the {side} served {metrics.predictions:.0f} predictions; need {policy.min_predictions}")
    unproven = [
        f"{c.metric}: not yet shown within {c.margin} (95% bound {c.upper:.4f}; {c.samples})"
        for c in comparisons
        if not c.non_inferior
    ]
    if harm:
        decision = "rollback"
        reasons = harm
    elif missing or unproven:
        decision = "inconclusive" if baked_minutes >= max_bake_minutes else "extend"
        reasons = missing + unproven
    else:
        decision = "promote"
        reasons = [f"{c.metric} within {c.margin} (95% bound {c.upper:.4f}; {c.samples})" for c in comparisons]
    return Verdict(
        decision=decision,
        healthy=decision == "promote",
        reasons=reasons,
        canary=canary,
        champion=champion,
        alarms_firing=list(alarms_firing),
        online_accuracy=accuracy,
        comparisons=comparisons,
        baked_minutes=round(baked_minutes, 3),
    )
