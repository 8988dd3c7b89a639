"""Judging a canary: the new version against the champion over the same bake window.

A canary is rolled back when any of its alarms fires, or when, compared with the champion, its error
rate, p99 latency, share of degraded answers or mean confidence is worse beyond the policy, or it
answers far fewer predictions per invocation (requests it refused: 4xx/5xx answers are not Lambda
errors), or when enough labels arrived and its online accuracy is lower. A metric the canary has no data for is not
evidence either way; ``min_predictions`` makes silence itself a reason to roll back.
"""

from __future__ import annotations

from collections.abc import Sequence

from loopml.retrain.models import CanaryPolicy, OnlineAccuracy, Verdict, VersionMetrics


def judge(
    canary: VersionMetrics,
    champion: VersionMetrics,
    alarms_firing: Sequence[str],
    accuracy: OnlineAccuracy | None,
    policy: CanaryPolicy,
) -> Verdict:
    reasons = [f"alarm {name} is in ALARM" for name in alarms_firing]
    if canary.predictions < policy.min_predictions:
        reasons.append(f"only {canary.predictions:.0f} predictions served by the canary; need {policy.min_predictions}")
    new_errors, old_errors = canary.error_rate, champion.error_rate
    if new_errors is not None and new_errors > (old_errors or 0.0) + policy.max_error_rate_increase:
        reasons.append(f"error rate {new_errors:.3f} vs champion {old_errors or 0.0:.3f}")
    if canary.invocations >= policy.min_invocations and champion.invocations and champion.predictions:
        new_rate = canary.predictions / canary.invocations
        old_rate = champion.predictions / champion.invocations
        if new_rate < policy.min_answer_ratio * old_rate:
            reasons.append(
                f"answer rate {new_rate:.2f} predictions per invocation vs champion {old_rate:.2f} "
                f"({canary.invocations:.0f} canary invocations)"
            )
    new_degraded, old_degraded = canary.degraded_rate, champion.degraded_rate
    if new_degraded is not None and new_degraded > (old_degraded or 0.0) + policy.max_degraded_rate_increase:
        reasons.append(f"degraded answers {new_degraded:.3f} vs champion {old_degraded or 0.0:.3f}")
    new_p99, old_p99 = canary.latency_p99_ms, champion.latency_p99_ms
    if (
        new_p99 is not None
        and old_p99 is not None
        and new_p99 > old_p99 * policy.max_latency_ratio
        and new_p99 - old_p99 > policy.min_latency_increase_ms
    ):
        reasons.append(f"p99 latency {new_p99:.1f} ms vs champion {old_p99:.1f} ms")
    new_conf, old_conf = canary.mean_confidence, champion.mean_confidence
    if new_conf is not None and old_conf is not None and old_conf - new_conf > policy.max_confidence_drop:
        reasons.append(f"mean confidence {new_conf:.3f} vs champion {old_conf:.3f}")
    if (
        accuracy is not None
        and accuracy.labels >= policy.min_labels
        and accuracy.canary is not None
        and accuracy.champion is not None
        and accuracy.champion - accuracy.canary > policy.max_accuracy_drop
    ):
        reasons.append(
            f"online accuracy {accuracy.canary:.3f} vs champion {accuracy.champion:.3f} "
            f"on {accuracy.labels} labelled predictions"
        )
    return Verdict(
        healthy=not reasons,
        reasons=reasons,
        canary=canary,
        champion=champion,
        alarms_firing=list(alarms_firing),
        online_accuracy=accuracy,
    )
