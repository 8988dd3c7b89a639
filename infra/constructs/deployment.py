"""Per-deployment settings every construct needs: stage, model, architecture, where code lives."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs

from loopml.topology import physical_name

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS_ROOT = ROOT / "functions"
INFRA_ROOT = ROOT / "infra"

RETENTION_DAYS = {
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    90: logs.RetentionDays.THREE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
}
ARCHITECTURES = {"x86_64": lambda_.Architecture.X86_64, "arm64": lambda_.Architecture.ARM_64}


@dataclass(frozen=True)
class Deployment:
    """Everything that differs between two deployments of the same declaration."""

    stage: str = "dev"
    model: str = "default"
    architecture: str = "x86_64"
    log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH
    provisioned_concurrency: Mapping[str, int] = field(default_factory=dict)
    functions_root: Path = FUNCTIONS_ROOT
    infra_root: Path = INFRA_ROOT

    def name(self, logical: str) -> str:
        """Physical names carry the stage (``loopml-<stage>-<name>``) so stages live side by side."""
        return physical_name(self.stage, logical)

    @property
    def lambda_architecture(self) -> lambda_.Architecture:
        return ARCHITECTURES[self.architecture]

    @classmethod
    def from_context(cls, get: Any, **overrides: Any) -> Deployment:
        """Reads CDK context (``-c stage=prod -c model=churn``); ``get`` is ``node.try_get_context``."""
        stage = str(get("stage") or "dev")
        model = str(get("model") or "default")
        architecture = str(get("architecture") or "x86_64")
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {sorted(ARCHITECTURES)}, not {architecture!r}")
        retention_days = int(get("log_retention_days") or 30)
        if retention_days not in RETENTION_DAYS:
            raise ValueError(f"log_retention_days must be one of {sorted(RETENTION_DAYS)}, not {retention_days}")
        retention = RETENTION_DAYS[retention_days]
        values: dict[str, Any] = {
            "stage": stage,
            "model": model,
            "architecture": architecture,
            "log_retention": retention,
            "provisioned_concurrency": parse_provisioned(get("provisioned_concurrency")),
        }
        values.update(overrides)
        return cls(**values)


def parse_provisioned(raw: object) -> dict[str, int]:
    """``{"inference": 2}`` (cdk.json) or ``"inference=2,feedback=1"`` (command line)."""
    if not raw:
        return {}
    if isinstance(raw, Mapping):
        return {str(k): int(v) for k, v in raw.items()}
    pairs = [item.split("=", 1) for item in str(raw).split(",") if item.strip()]
    if any(len(p) != 2 for p in pairs):
        raise ValueError(f"provisioned_concurrency must look like 'inference=2', not {raw!r}")
    return {name.strip(): int(count) for name, count in pairs}
