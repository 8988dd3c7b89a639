"""The drift service on fakes: verdicts, reports, history, the trigger's guards, config layering."""

from __future__ import annotations

import json
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any

import pytest

from loopml.drift.models import (
    DriftRunReport,
    EvaluateRequest,
    HistoryPoint,
    MonitoringConfig,
    RunSummary,
    is_scheduled,
    parse_invocation,
)
from loopml.errors import InvalidInput, ModelNotFound, NotFound, TransientError
from loopml.keys import drift_config_key as config_key
from loopml.keys import drift_latest_key as latest_key
from loopml.retrain.trigger import TriggerAction
from loopml.statistics.engine import DriftVerdict
from loopml.statistics.performance import PerformanceVerdict
from loopml.training import TrainedModel
from loopml_dev.memory import MemoryExecutions
from tests.unit.drift.helpers import T0, captured_rows, harness


@pytest.fixture(scope="module")
def steady(trained: TrainedModel) -> list[Any]:
    return captured_rows(trained, 600, seed=3, labelled=0.3)


@pytest.fixture(scope="module")
def drifted(trained: TrainedModel) -> list[Any]:
    return captured_rows(trained, 600, seed=4, covariate_shift=1.0, labelled=0.3)


def request(**fields: Any) -> EvaluateRequest:
    return EvaluateRequest.model_validate({"model": "default", **fields})


class Svg(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.svg = 0
        self.sections: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "svg":
            self.svg += 1
        if tag == "section":
            self.sections.append(dict(attrs).get("id") or dict(attrs).get("class") or "")


def test_steady_traffic_is_no_drift_and_starts_nothing(trained: TrainedModel, steady: list[Any]) -> None:
    h = harness(trained, steady)
    report = h.monitor.evaluate(request())
    s = report.summary
    assert s.data_drift is DriftVerdict.no_drift and len(s.drifted_features) <= 1  # sampling noise
    assert s.performance is PerformanceVerdict.ok and s.n_labelled > 100
    assert s.prediction_drift is DriftVerdict.no_drift
    assert s.trigger.action is TriggerAction.not_needed and s.trigger.code == "no_alert"
    assert h.starter.started == []
    assert s.window_end == T0 and s.window_start == T0 - timedelta(hours=24)
    assert set(h.store.objects) == {
        s.report_key,
        s.html_key,
        latest_key("default"),
        f"models/default/drift/v1/history/{s.run_id}.json",
    }
    assert s.report_key == f"models/default/drift/v1/reports/{s.run_id}.json"
    assert h.store.content_types[s.html_key].startswith("text/html")
    stored = DriftRunReport.model_validate_json(h.store.objects[s.report_key])
    assert stored == report
    assert h.published == [report]


def test_drifted_traffic_alerts_and_starts_one_retraining(trained: TrainedModel, drifted: list[Any]) -> None:
    h = harness(trained, drifted)
    s = h.monitor.evaluate(request()).summary
    assert s.data_drift is DriftVerdict.drifted
    assert {"age", "credit_score", "income"} <= set(s.drifted_features)
    assert s.share_drifted is not None and s.share_drifted >= 0.5
    assert any(a.startswith("dataset drift:") for a in s.alerts)
    d = s.trigger
    assert d.action is TriggerAction.started and d.code == "started"
    assert d.execution_name == "default-drift-20261125T120000"  # 6 h cooldown period starting 12:00
    assert d.cooldown_until == T0 + timedelta(hours=6) and d.starts_last_24h == 1
    [(name, payload)] = h.starter.started
    assert name == d.execution_name
    assert payload["model"] == "default" and payload["reason"].startswith("drift: dataset drift: ")
    assert set(payload) == {"model", "reason"} and len(payload["reason"]) <= 500
    decisions = [r for r in h.log.records if r[1] == "retraining decision"]
    assert decisions and decisions[0][2]["decision"]["action"] == "started"


def test_guards_cooldown_then_daily_budget(trained: TrainedModel, drifted: list[Any]) -> None:
    h = harness(trained, drifted, max_retrains_per_day=2, cooldown_hours=6)
    fixed = request(start=(T0 - timedelta(hours=3)).isoformat(), end=T0.isoformat())  # same rows as time passes
    assert h.monitor.evaluate(fixed).summary.trigger.action is TriggerAction.started
    h.clock.advance(hours=1)
    second = h.monitor.evaluate(fixed).summary.trigger
    assert (second.action, second.code) == (TriggerAction.skipped, "cooldown")
    assert second.cooldown_until == T0 + timedelta(hours=6) and "cooldown of 6 h" in second.message
    h.clock.advance(hours=6)
    assert h.monitor.evaluate(fixed).summary.trigger.action is TriggerAction.started
    h.clock.advance(hours=6, minutes=1)
    third = h.monitor.evaluate(fixed).summary.trigger
    assert (third.action, third.code, third.starts_last_24h) == (TriggerAction.skipped, "daily_budget", 2)
    h.clock.advance(hours=12)
    assert h.monitor.evaluate(fixed).summary.trigger.action is TriggerAction.started
    assert len(h.starter.started) == 3
    assert len({name for name, _ in h.starter.started}) == 3


def test_a_running_retraining_blocks_a_start(trained: TrainedModel, drifted: list[Any]) -> None:
    h = harness(trained, drifted, starter=MemoryExecutions(running_names=["default-20261125T1145"]))
    d = h.monitor.evaluate(request()).summary.trigger
    assert (d.action, d.code) == (TriggerAction.skipped, "retraining_running")
    assert "default-20261125T1145" in d.message and h.starter.started == []


def test_a_racing_evaluation_that_claimed_first_wins(trained: TrainedModel, drifted: list[Any]) -> None:
    h = harness(trained, drifted)
    h.store.objects["starts/default/20261125T120000Z.json"] = b"{}"
    h.store.hidden_prefix = "starts/default/"  # the rival's claim is not listed yet
    d = h.monitor.evaluate(request()).summary.trigger
    assert (d.action, d.code) == (TriggerAction.skipped, "already_started")
    assert h.starter.started == []


def test_a_failed_start_is_recorded_and_releases_its_claim(trained: TrainedModel, drifted: list[Any]) -> None:
    h = harness(trained, drifted, starter=MemoryExecutions(fail_with=TransientError("ThrottlingException")))
    d = h.monitor.evaluate(request()).summary.trigger
    assert (d.action, d.code) == (TriggerAction.failed, "start_failed") and "ThrottlingException" in d.message
    assert not any(k.startswith("starts/") for k in h.store.objects)
    h.starter.fail_with = None
    h.clock.advance(minutes=1)
    assert h.monitor.evaluate(request()).summary.trigger.action is TriggerAction.started


def test_disabled_and_unconfigured_triggers_only_report(trained: TrainedModel, drifted: list[Any]) -> None:
    h = harness(trained, drifted)
    off = h.monitor.evaluate(request(config={"trigger": {"enabled": False}})).summary.trigger
    assert (off.action, off.code) == (TriggerAction.skipped, "disabled") and off.reasons
    h2 = harness(trained, drifted, retrain_state_machine_arn="")
    none = h2.monitor.evaluate(request()).summary.trigger
    assert (none.action, none.code) == (TriggerAction.skipped, "not_configured")
    h3 = harness(trained, drifted, retrain_on_drift=False)
    assert h3.monitor.evaluate(request()).summary.trigger.code == "disabled"


def test_retrain_options_reach_the_state_machine_input(trained: TrainedModel, drifted: list[Any]) -> None:
    h = harness(trained, drifted)
    h.monitor.evaluate(request(config={"trigger": {"retrain": {"approval": True, "bake_minutes": 1}}}))
    [(_, payload)] = h.starter.started
    assert payload["approval"] is True and payload["bake_minutes"] == 1 and "canary_percent" not in payload


@pytest.mark.parametrize("n", [0, 40])
def test_too_little_data_is_a_verdict(trained: TrainedModel, steady: list[Any], n: int) -> None:
    h = harness(trained, steady[:n])
    report = h.monitor.evaluate(request())
    s = report.summary
    assert s.n_rows == n
    assert s.data_drift is DriftVerdict.insufficient_data and s.share_drifted is None
    assert s.performance is PerformanceVerdict.insufficient_data
    assert (s.trigger.action, s.trigger.code) == (TriggerAction.not_needed, "insufficient_data")
    assert s.report_key in h.store.objects and s.html_key in h.store.objects


def test_a_performance_regression_triggers_on_its_own(trained: TrainedModel) -> None:
    rows = captured_rows(trained, 400, seed=9, labelled=0.5, flip_labels=True)
    h = harness(trained, rows, cooldown_hours=0)
    s = h.monitor.evaluate(request()).summary
    assert s.data_drift is DriftVerdict.no_drift
    assert s.performance is PerformanceVerdict.regressed and "accuracy" in s.regressed_metrics
    assert s.trigger.action is TriggerAction.started
    assert [r for r in s.trigger.reasons if r.startswith("performance regression: accuracy")]
    h2 = harness(trained, rows)
    off = h2.monitor.evaluate(request(config={"trigger": {"on_performance_regression": False}})).summary
    assert off.trigger.code == "no_alert" and any(a.startswith("performance") for a in off.alerts)


def test_bias_audit_over_the_sensitive_feature(trained: TrainedModel, steady: list[Any]) -> None:
    report = harness(trained, steady).monitor.evaluate(request())
    assert report.bias is not None and [a.attribute for a in report.bias.attributes] == ["gender"]
    assert report.bias_labelled is not None
    groups = {g.group: g for g in report.bias_labelled.attributes[0].groups}
    assert groups["female"].accuracy is not None and not groups["nonbinary"].sufficient


def test_config_layers_stored_then_request(trained: TrainedModel, drifted: list[Any]) -> None:
    h = harness(trained, drifted)
    h.store.objects[config_key("default")] = json.dumps(
        {"window_hours": 6, "drift": {"per_feature": {"age": {"enabled": False}, "income": {"threshold": 0.9}}}}
    ).encode()
    report = h.monitor.evaluate(request(config={"drift": {"per_feature": {"income": {"method": "psi"}}}}))
    assert report.config.window_hours == 6 and report.summary.window_start == T0 - timedelta(hours=6)
    assert "age" not in report.summary.feature_scores
    income = report.data_drift.feature("income")
    assert (income.method.value if income.method else None, income.threshold) == ("psi", 0.9)
    assert report.config.trigger.cooldown_hours == 6  # from the settings


def test_bad_config_names_the_field(trained: TrainedModel, drifted: list[Any]) -> None:
    h = harness(trained, drifted)
    with pytest.raises(InvalidInput) as bad:
        h.monitor.evaluate(request(config={"drift": {"per_feature": {"agee": {"threshold": 0.2}}}}))
    assert bad.value.errors[0]["loc"] == ["config", "drift", "per_feature", "agee"]
    with pytest.raises(InvalidInput) as cls:
        h.monitor.evaluate(request(config={"bias": {"positive_class": "yes"}}))
    assert cls.value.errors[0]["loc"] == ["config", "bias", "positive_class"]
    h.store.objects[config_key("default")] = b'{"drift": {"drift_share": 2}}'
    with pytest.raises(InvalidInput) as stored:
        h.monitor.evaluate(request())
    assert stored.value.errors[0]["loc"] == ["models/default/drift/config.json", "drift", "drift_share"]
    h.store.objects[config_key("default")] = b"{not json"
    with pytest.raises(InvalidInput, match="not valid JSON"):
        h.monitor.evaluate(request())


def test_request_window_and_version(trained: TrainedModel, steady: list[Any]) -> None:
    h = harness(trained, steady)
    start, end = T0 - timedelta(hours=2), T0 - timedelta(hours=1, minutes=55)
    s = h.monitor.evaluate(request(start=start.isoformat(), end=end.isoformat(), model_version=1)).summary
    assert h.reads[-1] == ("default", start, end, 1)
    assert s.n_rows == 300 and (s.window_start, s.window_end) == (start, end)
    with pytest.raises(ModelNotFound):
        h.monitor.evaluate(request(model_version=7))
    with pytest.raises(InvalidInput, match="start must be in the past"):
        h.monitor.evaluate(request(start=(T0 + timedelta(hours=1)).isoformat()))


def test_history_feeds_the_html_and_latest(trained: TrainedModel, steady: list[Any], drifted: list[Any]) -> None:
    h = harness(trained, steady)
    with pytest.raises(NotFound):
        h.monitor.latest("default")
    first = h.monitor.evaluate(request()).summary
    h.rows[1] = drifted
    h.clock.advance(hours=1)
    last = h.monitor.evaluate(request()).summary
    assert h.monitor.latest("default") == last
    assert h.monitor.latest("default", 1) == last
    with pytest.raises(NotFound):
        h.monitor.latest("default", 2)
    points = [HistoryPoint.model_validate_json(v) for k, v in sorted(h.store.objects.items()) if "/history/" in k]
    assert [p.summary.run_id for p in points] == [first.run_id, last.run_id]
    assert all(f.histogram is None for p in points for f in p.data_drift.features)
    page = Svg()
    page.feed(h.store.objects[last.html_key].decode())
    n_features = len(last.feature_scores)
    # a histogram per feature, a score trend per feature, and the share-over-time chart
    assert page.svg == 2 * n_features + 1
    assert {"run", "performance", "quality", "prediction-drift", "label-drift"} <= set(page.sections)
    html = h.store.objects[last.html_key].decode()
    assert "dataset drift:" in html and "started" in html and last.run_id in html


def test_an_older_run_never_replaces_latest(trained: TrainedModel, steady: list[Any]) -> None:
    h = harness(trained, steady)
    newer = h.monitor.evaluate(request()).summary
    h.clock.advance(hours=-1)
    h.monitor.evaluate(request())
    assert RunSummary.model_validate_json(h.store.objects[latest_key("default")]) == newer


def test_read_failures_propagate(trained: TrainedModel) -> None:
    h = harness(trained, [])
    h.store.objects["__fail_reads__"] = b"1"
    with pytest.raises(TransientError):
        h.monitor.evaluate(request())


def test_schedule_skips_a_model_without_versions(trained: TrainedModel, steady: list[Any]) -> None:
    h = harness(trained, steady)
    assert h.monitor.scheduled("other") == {"model": "other", "skipped": "model 'other' has no alias 'champion'"}
    assert h.monitor.scheduled("default")["data_drift"] == "no_drift"


def test_invocation_parsing() -> None:
    assert is_scheduled({"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}})
    assert not is_scheduled({"model": "default"})
    assert parse_invocation({"model": "default", "model_version": 2}).model_version == 2
    with pytest.raises(InvalidInput) as bad:
        parse_invocation({"model": "Bad Name", "model_version": 0})
    assert [e["loc"] for e in bad.value.errors] == [["model"], ["model_version"]]
    with pytest.raises(InvalidInput, match="'end' must be after 'start'"):
        parse_invocation({"model": "default", "start": "2026-11-25T10:00:00Z", "end": "2026-11-25T09:00:00Z"})
    with pytest.raises(InvalidInput) as extra:
        parse_invocation({"model": "default", "config": {"drift": {"treshold": 1}}})
    assert extra.value.errors[0]["loc"] == ["config", "drift", "treshold"]
    with pytest.raises(InvalidInput):
        parse_invocation(["default"])


def test_config_defaults_documented() -> None:
    c = MonitoringConfig()
    assert (c.window_hours, c.drift.drift_share, c.trigger.cooldown_hours, c.trigger.max_starts_per_day) == (
        24.0,
        0.5,
        6.0,
        2,
    )
