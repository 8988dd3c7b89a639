"""The REST API (API Gateway v1): every declared route, proxied to its function's ``live`` alias.

A REST API rather than an HTTP API because it has API keys with usage plans, request validation and
per-method IAM auth. Routes come only from ``FunctionSpec.routes``; a function adds its routes with
``add_routes`` and the API exists as soon as the first route does.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import CfnOutput, RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.constructs.deployment import Deployment
from infra.constructs.nag import acknowledge
from loopml.topology import Route

RATE_LIMIT = 50  # requests/s, steady state, for the whole stage
BURST_LIMIT = 100
KEY_RATE_LIMIT = 20  # per API key
KEY_BURST_LIMIT = 40
KEY_DAILY_QUOTA = 100_000
BODY_METHODS = frozenset({"POST", "PUT"})

_AUTH = {
    "none": apigw.AuthorizationType.NONE,
    "api_key": apigw.AuthorizationType.NONE,  # the key is checked by the usage plan, not an authorizer
    "iam": apigw.AuthorizationType.IAM,
}
_COGNITO_REASON = {
    "none": "Deliberately public: health, OpenAPI document and Swagger UI carry no data and must work "
    "without credentials (load balancers, humans reading the docs).",
    "api_key": "Machine-to-machine clients authenticate with an API key bound to a usage plan "
    "(throttling and quota per key); there are no end users to put in a Cognito pool.",
    "iam": "Operators and AWS services call this route with SigV4 (IAM auth); Cognito is for end users.",
}


class LoopmlApi(Construct):
    """Throttled, access-logged, traced REST API with request validation and an API key plan."""

    def __init__(self, scope: Construct, construct_id: str, *, deployment: Deployment) -> None:
        super().__init__(scope, construct_id)
        self.deployment = deployment
        self._api: apigw.RestApi | None = None
        self._validator: apigw.RequestValidator | None = None
        self._body_model: apigw.Model | None = None
        self._plan: apigw.UsagePlan | None = None

    @property
    def rest_api(self) -> apigw.RestApi | None:
        return self._api

    def _ensure_api(self) -> apigw.RestApi:
        if self._api is not None:
            return self._api
        name = self.deployment.name
        access_logs = logs.LogGroup(
            self,
            "AccessLogs",
            log_group_name=f"/aws/apigateway/{name('api')}/access",
            retention=self.deployment.log_retention,
            removal_policy=RemovalPolicy.DESTROY,
        )
        api = apigw.RestApi(
            self,
            "Api",
            rest_api_name=name("api"),
            description=f"loopml {self.deployment.stage}: model {self.deployment.model}",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            # Account-wide setting shared by every stage: the role is retained (CDK's default) so that
            # destroying one stage does not break execution logging of the others.
            cloud_watch_role=True,
            deploy_options=apigw.StageOptions(
                stage_name=self.deployment.stage,
                access_log_destination=apigw.LogGroupLogDestination(access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=True,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=True,
                ),
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,  # request bodies are features: keep them out of logs
                metrics_enabled=True,
                tracing_enabled=True,
                throttling_rate_limit=RATE_LIMIT,
                throttling_burst_limit=BURST_LIMIT,
            ),
        )
        self._validator = api.add_request_validator(
            "Validator", validate_request_body=True, validate_request_parameters=True
        )
        # The shape of a prediction depends on the model's schema, which the function validates; the
        # gateway rejects what can never be valid (not a JSON object) before paying for an invocation.
        self._body_model = api.add_model(
            "JsonObject",
            content_type="application/json",
            schema=apigw.JsonSchema(schema=apigw.JsonSchemaVersion.DRAFT4, type=apigw.JsonSchemaType.OBJECT),
        )
        acknowledge(
            api,
            "AwsSolutions-APIG3",
            "A WAFv2 web ACL is an account-level policy choice (and cost); stage throttling, per-key "
            "usage plans and request validation bound abuse here. Attach an ACL per organisation policy.",
        )
        acknowledge(
            api,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AmazonAPIGatewayPushToCloudWatchLogs]",
            "API Gateway's account-level CloudWatch role: this AWS-managed policy is the documented one "
            "for execution logging and only allows writing logs.",
        )
        CfnOutput(self, "Url", value=api.url, description="Base URL of the stage")
        self._api = api
        return api

    def _ensure_plan(self, api: apigw.RestApi) -> apigw.UsagePlan:
        if self._plan is None:
            name = self.deployment.name
            key = api.add_api_key("Key", api_key_name=name("key"))
            plan = api.add_usage_plan(
                "Plan",
                name=name("plan"),
                throttle=apigw.ThrottleSettings(rate_limit=KEY_RATE_LIMIT, burst_limit=KEY_BURST_LIMIT),
                quota=apigw.QuotaSettings(limit=KEY_DAILY_QUOTA, period=apigw.Period.DAY),
            )
            plan.add_api_stage(stage=api.deployment_stage)
            plan.add_api_key(key)
            CfnOutput(
                self,
                "ApiKeyId",
                value=key.key_id,
                description="aws apigateway get-api-key --include-value --api-key <id>",
            )
            self._plan = plan
        return self._plan

    def add_routes(self, routes: Sequence[Route], target: lambda_.IFunction) -> None:
        """Proxy each route to ``target`` (a function's alias) with the route's auth."""
        if not routes:
            return
        api = self._ensure_api()
        integration = apigw.LambdaIntegration(target, proxy=True)
        for route in routes:
            if route.auth == "api_key":
                self._ensure_plan(api)
            method = api.root.resource_for_path(route.path).add_method(
                route.method,
                integration,
                api_key_required=route.auth == "api_key",
                authorization_type=_AUTH[route.auth],
                request_validator=self._validator,
                request_models={"application/json": self._body_model}
                if route.method in BODY_METHODS and self._body_model is not None
                else None,
            )
            acknowledge(method, "AwsSolutions-COG4", _COGNITO_REASON[route.auth])
            if route.auth != "iam":
                acknowledge(method, "AwsSolutions-APIG4", _COGNITO_REASON[route.auth])
