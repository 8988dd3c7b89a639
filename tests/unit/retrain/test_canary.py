from __future__ import annotations

from loopml.retrain.canary import judge
from loopml.retrain.models import CanaryPolicy, OnlineAccuracy, VersionMetrics

POLICY = CanaryPolicy()
CHAMPION = VersionMetrics(
    predictions=1000, degraded=0, invocations=500, errors=1, latency_p99_ms=20, mean_confidence=0.8
)


def test_comparable_canary_is_healthy() -> None:
    canary = VersionMetrics(predictions=100, invocations=50, latency_p99_ms=25, mean_confidence=0.78)
    verdict = judge(canary, CHAMPION, [], OnlineAccuracy(labels=40, canary=0.8, champion=0.81), POLICY)
    assert verdict.healthy, verdict.reasons


def test_no_traffic_is_not_evidence_unless_required() -> None:
    assert judge(VersionMetrics(), CHAMPION, [], None, POLICY).healthy
    verdict = judge(VersionMetrics(), CHAMPION, [], None, CanaryPolicy(min_predictions=10))
    assert not verdict.healthy and "only 0 predictions" in verdict.reasons[0]


def test_each_signal_rolls_back() -> None:
    cases = {
        "alarm": (VersionMetrics(), ["canary-degraded"], None),
        "error rate": (VersionMetrics(invocations=100, errors=10), [], None),
        "degraded": (VersionMetrics(predictions=100, degraded=5), [], None),
        "p99 latency": (VersionMetrics(predictions=10, latency_p99_ms=200), [], None),
        "mean confidence": (VersionMetrics(predictions=10, mean_confidence=0.6), [], None),
        "online accuracy": (VersionMetrics(), [], OnlineAccuracy(labels=50, canary=0.6, champion=0.8)),
        "answer rate": (VersionMetrics(invocations=20, predictions=2), [], None),
    }
    for expected, (canary, alarms, accuracy) in cases.items():
        verdict = judge(canary, CHAMPION, alarms, accuracy, POLICY)
        assert not verdict.healthy, expected
        assert any(expected in reason for reason in verdict.reasons), (expected, verdict.reasons)


def test_small_latency_increase_and_few_labels_are_tolerated() -> None:
    canary = VersionMetrics(predictions=10, latency_p99_ms=60)  # 3x but only +40 ms
    few = OnlineAccuracy(labels=5, canary=0.0, champion=1.0)
    assert judge(canary, CHAMPION, [], few, POLICY).healthy
