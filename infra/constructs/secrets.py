"""Generated secrets from the declaration (the HMAC key for subject ids), readable only by grant."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import RemovalPolicy
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.constructs.deployment import Deployment
from infra.constructs.nag import acknowledge
from infra.constructs.resources import Resources, pascal
from loopml.topology import SecretSpec


class Secrets(Construct):
    """Retained on delete: a new key would make every stored subject hash unmatchable (erasure included)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        deployment: Deployment,
        secrets: Sequence[SecretSpec],
        resources: Resources,
    ) -> None:
        super().__init__(scope, construct_id)
        for spec in secrets:
            secret = secretsmanager.Secret(
                self,
                pascal(spec.name),
                secret_name=deployment.name(spec.name),
                description=f"loopml {spec.name}: generated at first deploy, never logged",
                generate_secret_string=secretsmanager.SecretStringGenerator(
                    password_length=64, exclude_punctuation=True, include_space=False
                ),
                removal_policy=RemovalPolicy.RETAIN,
            )
            acknowledge(
                secret,
                "AwsSolutions-SMG4",
                "an HMAC key for subject ids must not rotate: stored hashes (and erasure requests) would no "
                "longer match; replace it deliberately, with a re-keying of the captured data",
            )
            resources.secrets[spec.name] = secret
