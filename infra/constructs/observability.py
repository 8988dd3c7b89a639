"""Alarm topic, alarms and the per-model dashboard.

The topic is created first so that every other construct can route its alarms to it; ``watch`` is
called last, once the API, functions and queues exist, to draw the dashboard and the service alarms.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.constructs.deployment import Deployment
from infra.constructs.resources import pascal

P99_LATENCY_MS = 1000
WIDTH = 24  # dashboard grid width


@dataclass(frozen=True)
class WatchedQueue:
    queue: sqs.IQueue
    dlq: sqs.IQueue


class Observability(Construct):
    """Encrypted alarm topic, plus ``watch`` for the dashboard and alarms of the finished stack."""

    def __init__(self, scope: Construct, construct_id: str, *, deployment: Deployment) -> None:
        super().__init__(scope, construct_id)
        self.deployment = deployment
        self.key = kms.Key(
            self,
            "AlarmKey",
            description=f"Encrypts {deployment.name('alarms')} notifications",
            enable_key_rotation=True,
            # It only protects notifications in flight: nothing at rest depends on it after teardown.
            removal_policy=RemovalPolicy.DESTROY,
            pending_window=Duration.days(7),
        )
        # CloudWatch publishes alarm notifications into the encrypted topic.
        self.key.grant_encrypt_decrypt(iam.ServicePrincipal("cloudwatch.amazonaws.com"))
        self.topic = sns.Topic(
            self, "Alarms", topic_name=deployment.name("alarms"), master_key=self.key, enforce_ssl=True
        )
        self._action = cw_actions.SnsAction(self.topic)
        self.dashboard: cw.Dashboard | None = None

    def notify(self, alarm: cw.Alarm) -> cw.Alarm:
        """Route an alarm (state ALARM and back to OK) to the alarm topic."""
        alarm.add_alarm_action(self._action)
        alarm.add_ok_action(self._action)
        return alarm

    def watch(
        self,
        *,
        api: apigw.RestApi | None,
        functions: Mapping[str, lambda_.Alias],
        queues: Mapping[str, WatchedQueue],
    ) -> cw.Dashboard:
        name = self.deployment.name
        dashboard = cw.Dashboard(self, "Dashboard", dashboard_name=name(f"{self.deployment.model}-model"))
        dashboard.add_widgets(
            cw.TextWidget(
                markdown=f"# loopml {self.deployment.stage}: model `{self.deployment.model}`", width=WIDTH, height=1
            )
        )
        if api is not None:
            five_min = Duration.minutes(5)
            latency = [api.metric_latency(statistic=s, period=five_min) for s in ("p50", "p90", "p99")]
            dashboard.add_widgets(
                cw.GraphWidget(title="API latency (ms)", left=latency, width=12),
                cw.GraphWidget(
                    title="API requests and errors",
                    left=[api.metric_count(period=five_min)],
                    right=[api.metric_client_error(period=five_min), api.metric_server_error(period=five_min)],
                    width=12,
                ),
            )
            self.notify(
                api.metric_server_error(period=five_min, statistic="Sum").create_alarm(
                    self,
                    "Api5xx",
                    alarm_name=name("api-5xx"),
                    alarm_description="The API returned 5xx responses (function errors or timeouts).",
                    threshold=0,
                    comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                    evaluation_periods=1,
                    treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
                )
            )
            self.notify(
                api.metric_latency(statistic="p99", period=five_min).create_alarm(
                    self,
                    "ApiP99Latency",
                    alarm_name=name("api-p99-latency"),
                    alarm_description=f"p99 API latency above {P99_LATENCY_MS} ms for 15 minutes.",
                    threshold=P99_LATENCY_MS,
                    comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                    evaluation_periods=3,
                    treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
                )
            )
        for fname, alias in functions.items():
            dashboard.add_widgets(
                cw.GraphWidget(
                    title=f"{fname}: invocations, errors, throttles",
                    left=[alias.metric_invocations(), alias.metric_errors(), alias.metric_throttles()],
                    width=12,
                ),
                cw.GraphWidget(
                    title=f"{fname}: duration (ms)",
                    left=[alias.metric_duration(statistic=s) for s in ("p50", "p99")],
                    width=12,
                ),
            )
            self.notify(
                alias.metric_errors(period=Duration.minutes(5), statistic="Sum").create_alarm(
                    self,
                    f"{pascal(fname)}Errors",
                    alarm_name=name(f"{fname}-errors"),
                    alarm_description=f"The {fname} function raised errors (alias {alias.alias_name}).",
                    threshold=0,
                    comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                    evaluation_periods=1,
                    treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
                )
            )
        for qname, watched in queues.items():
            dashboard.add_widgets(
                cw.GraphWidget(
                    title=f"{qname} queue: age of oldest message (s)",
                    left=[watched.queue.metric_approximate_age_of_oldest_message()],
                    width=12,
                ),
                cw.GraphWidget(
                    title=f"{qname} dead-letter queue depth",
                    left=[watched.dlq.metric_approximate_number_of_messages_visible(statistic="Maximum")],
                    width=12,
                ),
            )
        # Reserved rows: the drift and retraining constructs add their metrics through add_widgets.
        dashboard.add_widgets(
            cw.TextWidget(
                markdown="## Drift scores\nReserved for the drift evaluation (PSI/KS per feature).",
                width=12,
                height=3,
            ),
            cw.TextWidget(
                markdown="## Canary vs champion\nReserved for the retraining rollout (errors, latency by version).",
                width=12,
                height=3,
            ),
        )
        self.dashboard = dashboard
        return dashboard

    def add_widgets(self, *widgets: cw.IWidget) -> None:
        """For later constructs (drift scores, canary vs champion); requires ``watch`` first."""
        if self.dashboard is None:
            raise RuntimeError("Observability.watch must run before widgets are added")
        self.dashboard.add_widgets(*widgets)
