"""The canary verdict on evidence: promote only on shown non-inferiority, never on silence."""

from __future__ import annotations

from typing import Any

import pytest

from loopml.retrain.canary import judge, mean_difference, paired_difference, proportion_difference
from loopml.retrain.models import CanaryPolicy, OnlineAccuracy, VersionMetrics

POLICY = CanaryPolicy()
CHAMPION = VersionMetrics(
    predictions=3000,
    degraded=0,
    invocations=3000,
    errors=1,
    latency_p99_ms=20,
    mean_confidence=0.8,
    captured=3000,
    confidence_std=0.12,
)


def healthy_canary(**changes: Any) -> VersionMetrics:
    base = {
        "predictions": 400,
        "invocations": 400,
        "errors": 0,
        "latency_p99_ms": 25,
        "mean_confidence": 0.79,
        "captured": 400,
        "confidence_std": 0.12,
    }
    return VersionMetrics(**{**base, **changes})


def verdict(canary: VersionMetrics, alarms=(), accuracy=None, baked=5.0, longest=20.0, policy=POLICY):
    return judge(canary, CHAMPION, list(alarms), accuracy, policy, baked_minutes=baked, max_bake_minutes=longest)


def test_a_comparable_canary_with_enough_evidence_is_promoted() -> None:
    accuracy = OnlineAccuracy(labels=400, canary=0.81, champion=0.81, discordant=(10, 10))
    found = verdict(healthy_canary(), accuracy=accuracy)
    assert found.decision == "promote" and found.healthy, found.reasons
    assert {c.metric for c in found.comparisons} == {"error_rate", "degraded_share", "confidence_drop", "accuracy_drop"}
    assert all(c.non_inferior for c in found.comparisons)


def test_no_traffic_extends_the_bake_then_is_inconclusive_never_promoted() -> None:
    silent = VersionMetrics()
    early = verdict(silent, baked=5, longest=20)
    assert early.decision == "extend" and "the canary served 0 predictions; need 50" in early.reasons[0]
    late = verdict(silent, baked=20, longest=20)
    assert late.decision == "inconclusive" and not late.healthy


def test_a_few_predictions_cannot_show_non_inferiority() -> None:
    thin = healthy_canary(predictions=60, invocations=60, captured=60)
    found = verdict(thin, baked=20, longest=20)
    assert found.decision == "inconclusive"
    assert any(r.startswith("error_rate: not yet shown within 0.02") for r in found.reasons), found.reasons


@pytest.mark.parametrize(
    ("expected", "canary", "alarms", "accuracy"),
    [
        ("alarm", healthy_canary(), ["canary-degraded"], None),
        ("error_rate", healthy_canary(errors=60), [], None),
        ("degraded_share", healthy_canary(degraded=40), [], None),
        ("p99 latency", healthy_canary(latency_p99_ms=200), [], None),
        ("confidence_drop", healthy_canary(mean_confidence=0.55), [], None),
        (
            "accuracy_drop",
            healthy_canary(),
            [],
            OnlineAccuracy(labels=300, canary=0.6, champion=0.8, discordant=(70, 10)),
        ),
        ("answer rate", healthy_canary(invocations=400, predictions=40, captured=40), [], None),
    ],
)
def test_each_kind_of_harm_rolls_back_and_is_named(expected, canary, alarms, accuracy) -> None:
    found = verdict(canary, alarms=alarms, accuracy=accuracy)
    assert found.decision == "rollback", (expected, found.reasons)
    assert any(expected in reason for reason in found.reasons), (expected, found.reasons)


def test_labels_below_the_minimum_are_not_evidence_either_way() -> None:
    few = OnlineAccuracy(labels=5, canary=0.0, champion=1.0, discordant=(5, 0))
    found = verdict(healthy_canary(), accuracy=few)
    assert found.decision == "promote" and "accuracy_drop" not in {c.metric for c in found.comparisons}


def test_the_bounds_know_their_sample_size() -> None:
    small = proportion_difference(1, 20, 0, 20)
    large = proportion_difference(50, 1000, 0, 1000)
    assert small[2] - small[1] > large[2] - large[1]  # wider with fewer observations
    assert large[1] > 0.03  # 5% vs 0% on 1,000 each: worse with confidence
    estimate, lower, upper = mean_difference(0.8, 0.1, 500, 0.8, 0.1, 500)
    assert estimate == 0 and lower < 0 < upper and upper < 0.02
    estimate, lower, upper = paired_difference(0, 0, 400)
    assert estimate == 0 and upper < 0.02
