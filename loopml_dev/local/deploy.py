"""Deploys a ``Topology`` into moto through the real AWS APIs, as CDK deploys it to AWS.

Functions are created with ``create_function``, published with ``publish_version`` and served through
their alias, so traffic shifting later uses ``update_alias(RoutingConfig=...)`` exactly as in the cloud.
A redeploy compares code (``CodeSha256``) and configuration and publishes a new version only when one
of them changed. Event source mappings and schedules are *not* created in moto (moto would consume
the queue itself): the local pollers and scheduler read them from the topology.

Reference resolution (``Ref.attribute``): bucket name/arn/url (url = the local endpoint), queue
name/url/arn, table name/arn, state_machine name/arn, function name (physical) and arn (the ARN of the
function's alias, so state machines and callers go through the alias like production traffic).
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from loopml.errors import ConfigurationError
from loopml.topology import FunctionSpec, Ref, Topology, physical_name
from loopml_dev.local import grants, unshipped
from loopml_dev.local.code_store import CodeStore
from loopml_dev.local.stores import StoreDeployer

ACCOUNT_ID = "123456789012"  # moto's default account
LAMBDA_RUNTIME = "python3.12"
_SKIPPED_PARTS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
_TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": ["lambda.amazonaws.com", "states.amazonaws.com"]},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)


def deterministic_zip(files: Iterable[tuple[str, Path]]) -> bytes:
    """Same files, same bytes: fixed timestamps and order, so unchanged code keeps its SHA-256."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for arcname, path in sorted(files):
            info = zipfile.ZipInfo(arcname, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def _tree(root: Path, prefix: str = "") -> list[tuple[str, Path]]:
    files = []
    for path in root.rglob("*"):
        relative = path.relative_to(root).as_posix()
        if (
            not path.is_file()
            or _SKIPPED_PARTS.intersection(path.relative_to(root).parts)
            or path.suffix in (".pyc", ".pyo")
            or ".egg-info" in relative
        ):
            continue
        files.append((prefix + relative, path))
    return files


def function_zip(functions_root: Path, name: str) -> bytes:
    folder = functions_root / name
    if not folder.is_dir():
        raise ConfigurationError(f"function {name!r}: no code folder {folder}")
    return deterministic_zip(_tree(folder))


def layer_zip(package_dir: Path) -> bytes:
    """The loopml layer as Lambda extracts it under /opt: the package, whole, at ``python/loopml/``."""
    return deterministic_zip(_tree(package_dir, "python/loopml/"))


@dataclass
class Deployment:
    """What the local stack needs to know about the deployed resources."""

    stage: str
    region: str
    functions: dict[str, str] = field(default_factory=dict)  # declared name -> physical name
    versions: dict[str, str] = field(default_factory=dict)  # declared name -> version behind the alias
    queue_urls: dict[str, str] = field(default_factory=dict)  # declared name (and its DLQ) -> url
    queue_arns: dict[str, str] = field(default_factory=dict)
    buckets: dict[str, str] = field(default_factory=dict)
    tables: dict[str, str] = field(default_factory=dict)
    state_machines: dict[str, str] = field(default_factory=dict)  # declared name -> ARN
    secret_arns: dict[str, str] = field(default_factory=dict)
    layer_arn: str = ""
    role_arn: str = ""  # the state machines' role; each function has its own (loopml-<stage>-<function>-role)
    grants: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # physical function -> statements


class Deployer:
    """Creates or updates everything in ``topology``; call ``deploy`` once, ``deploy_function`` later."""

    def __init__(
        self,
        client: Callable[[str], Any],
        code_store: CodeStore,
        topology: Topology,
        functions_root: Path,
        layer_root: Path,
        infra_root: Path,
        stage: str,
        region: str,
        aws_endpoint: str,
        log: Callable[[str], None] = lambda message: None,
        secrets_dir: Path | None = None,
    ) -> None:
        self._client = client
        self.code_store = code_store
        self.topology = topology
        self.functions_root = functions_root
        self.layer_root = layer_root
        self.infra_root = infra_root
        self.stage = stage
        self.region = region
        self.aws_endpoint = aws_endpoint
        self._log = log
        self.secrets_dir = secrets_dir or code_store.root.parent / "secrets"
        self.deployment = Deployment(stage=stage, region=region)
        self.stores = StoreDeployer(client, self.name, self.deployment, self.secrets_dir, log)
        self._env_overrides: dict[str, dict[str, str]] = {}

    def name(self, logical: str) -> str:
        return physical_name(self.stage, logical)

    def deploy(self, env_overrides: dict[str, dict[str, str]] | None = None, notifications: bool = True) -> Deployment:
        """``notifications=False`` leaves bucket notifications to a later ``deploy_notifications`` call
        (the local stack restores saved objects first, so restoring fires no upload events)."""
        self._env_overrides = {k: dict(v) for k, v in (env_overrides or {}).items()}
        self.deployment.role_arn = self._role()
        for bucket in self.topology.buckets:
            self.stores.bucket(bucket.name)
        for queue in self.topology.queues:
            self.stores.queue(queue.name, queue.visibility_timeout_s, queue.max_receive_count, queue.retention_days)
        for table in self.topology.tables:
            self.stores.table(table.name, table.partition_key, table.ttl_attribute)
        for secret in self.topology.secrets:
            self.stores.secret(secret.name)
        for machine in self.topology.state_machines:  # ARNs are known before functions need them
            self.deployment.state_machines[machine.name] = self._state_machine_arn(machine.name)
        for spec in self.topology.functions:
            self.deployment.functions[spec.name] = self.name(spec.name)
        self._layer()
        for spec in self.topology.functions:
            self.deploy_function(spec.name)
        for machine in self.topology.state_machines:
            self._deploy_state_machine(machine.name, machine.definition, machine.substitutions)
        if notifications:
            self.deploy_notifications()
        return self.deployment

    def deploy_notifications(self) -> None:
        """Object-created events to the declared queues, with the queue policy S3 needs to send them."""
        self.stores.notifications(self.topology)

    # --- resources ------------------------------------------------------------------------------
    def _role(self, name: str = "local-role") -> str:
        """An IAM role in moto: one per function (its grants are enforced by ``grants``), one for workflows."""
        iam = self._client("iam")
        role_name = self.name(name)
        try:
            arn: str = iam.get_role(RoleName=role_name)["Role"]["Arn"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "NoSuchEntity":
                raise
            arn = iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=_TRUST)["Role"]["Arn"]
        return arn

    def _layer(self) -> None:
        lam = self._client("lambda")
        data = layer_zip(self.layer_root)
        sha = self.code_store.put(data)
        layer_name = self.name("loopml")
        versions = lam.list_layer_versions(LayerName=layer_name).get("LayerVersions", [])
        for version in versions:
            detail = lam.get_layer_version(LayerName=layer_name, VersionNumber=version["Version"])
            if detail["Content"]["CodeSha256"] == sha:
                self.deployment.layer_arn = version["LayerVersionArn"]
                return
        published = lam.publish_layer_version(
            LayerName=layer_name,
            Description="loopml shared library",
            Content={"ZipFile": data},
            CompatibleRuntimes=[LAMBDA_RUNTIME],
        )
        self.deployment.layer_arn = published["LayerVersionArn"]
        self._log(f"layer {published['LayerVersionArn']}")

    def _state_machine_arn(self, logical: str) -> str:
        return f"arn:aws:states:{self.region}:{ACCOUNT_ID}:stateMachine:{self.name(logical)}"

    def _deploy_state_machine(self, logical: str, definition_path: str, substitutions: dict[str, Ref]) -> None:
        path = self.infra_root / definition_path
        try:
            definition = path.read_text()
        except OSError as exc:
            raise ConfigurationError(f"state machine {logical!r}: cannot read definition {path}: {exc}") from None
        for placeholder, ref in substitutions.items():
            definition = definition.replace("${" + placeholder + "}", self.resolve(ref))
        try:
            json.loads(definition)
        except ValueError as exc:
            raise ConfigurationError(f"state machine {logical!r}: {path} is not valid JSON: {exc}") from None
        sfn = self._client("stepfunctions")
        arn = self._state_machine_arn(logical)
        try:
            sfn.describe_state_machine(stateMachineArn=arn)
            sfn.update_state_machine(stateMachineArn=arn, definition=definition, roleArn=self.deployment.role_arn)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "StateMachineDoesNotExist":
                raise
            sfn.create_state_machine(name=self.name(logical), definition=definition, roleArn=self.deployment.role_arn)
        self._log(f"state machine {self.name(logical)}")

    # --- references -----------------------------------------------------------------------------
    def resolve(self, ref: Ref) -> str:
        physical = self.name(ref.name)
        d = self.deployment
        try:
            if ref.kind == "bucket":
                return {
                    "name": physical,
                    "arn": f"arn:aws:s3:::{physical}",
                    "url": f"{self.aws_endpoint}/{physical}",
                }[ref.attribute]
            if ref.kind == "queue":
                return {"name": physical, "url": d.queue_urls[ref.name], "arn": d.queue_arns[ref.name]}[ref.attribute]
            if ref.kind == "table":
                arn = f"arn:aws:dynamodb:{self.region}:{ACCOUNT_ID}:table/{physical}"
                return {"name": physical, "arn": arn}[ref.attribute]
            if ref.kind == "state_machine":
                return {"name": physical, "arn": self._state_machine_arn(ref.name)}[ref.attribute]
            if ref.kind == "secret":
                return {"name": physical, "arn": d.secret_arns[ref.name]}[ref.attribute]
            if ref.kind == "function":
                alias = self.topology.function(ref.name).alias
                arn = f"arn:aws:lambda:{self.region}:{ACCOUNT_ID}:function:{physical}:{alias}"
                return {"name": physical, "arn": arn}[ref.attribute]
        except KeyError:
            pass
        raise ConfigurationError(f"cannot resolve {ref.kind} {ref.name!r} attribute {ref.attribute!r}")

    # --- functions ------------------------------------------------------------------------------
    def environment(self, spec: FunctionSpec, overrides: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(spec.environment)
        if spec.layer_set == "slim":
            env[unshipped.ENV] = ",".join(unshipped.NOT_IN_SLIM)
        env.update({key: self.resolve(ref) for key, ref in spec.resources.items()})
        env.update(self._env_overrides.get(spec.name, {}))
        env.update(overrides or {})
        return env

    def deploy_function(self, logical: str, env_overrides: dict[str, str] | None = None) -> str:
        """Creates or updates the function; publishes and aliases a new version only if something changed."""
        spec = self.topology.function(logical)
        if env_overrides:
            self._env_overrides.setdefault(logical, {}).update(env_overrides)
        lam = self._client("lambda")
        physical = self.name(logical)
        self.deployment.grants[physical] = grants.statements(spec.grants, self.name)
        data = function_zip(self.functions_root, spec.folder)
        sha = self.code_store.put(data)
        config = {
            "Role": self._role(f"{logical}-role"),
            "Handler": spec.handler,
            "Runtime": LAMBDA_RUNTIME,
            "Description": spec.description,
            "Timeout": spec.timeout_s,
            "MemorySize": spec.memory_mb,
            "Environment": {"Variables": self.environment(spec)},
            "Layers": [self.deployment.layer_arn],
        }
        try:
            current = lam.get_function_configuration(FunctionName=physical)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceNotFoundException":
                raise
            current = None
        changed = current is None
        if current is None:
            lam.create_function(FunctionName=physical, Code={"ZipFile": data}, Publish=False, **config)
        else:
            if current.get("CodeSha256") != sha:
                lam.update_function_code(FunctionName=physical, ZipFile=data)
                changed = True
            if _config_differs(current, config):
                lam.update_function_configuration(FunctionName=physical, **config)
                changed = True
        if changed:
            version = lam.publish_version(FunctionName=physical)["Version"]
        else:
            version = self.deployment.versions.get(logical) or _latest_version(lam, physical)
        self._point_alias(lam, physical, spec.alias, version)
        self.deployment.versions[logical] = version
        self._log(f"function {physical} version {version} ({spec.alias})" + ("" if changed else " unchanged"))
        return version

    def _point_alias(self, lam: Any, physical: str, alias: str, version: str) -> None:
        try:
            current = lam.get_alias(FunctionName=physical, Name=alias)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceNotFoundException":
                raise
            lam.create_alias(FunctionName=physical, Name=alias, FunctionVersion=version)
            return
        if current["FunctionVersion"] != version or current.get("RoutingConfig"):
            lam.update_alias(
                FunctionName=physical,
                Name=alias,
                FunctionVersion=version,
                RoutingConfig={"AdditionalVersionWeights": {}},
            )


def _config_differs(current: dict[str, Any], wanted: dict[str, Any]) -> bool:
    layers = [layer["Arn"] for layer in current.get("Layers") or []]
    return (
        current.get("Handler") != wanted["Handler"]
        or current.get("Role") != wanted["Role"]
        or current.get("Timeout") != wanted["Timeout"]
        or current.get("MemorySize") != wanted["MemorySize"]
        or (current.get("Environment") or {}).get("Variables", {}) != wanted["Environment"]["Variables"]
        or layers != wanted["Layers"]
        or current.get("Description", "") != wanted["Description"]
    )


def _latest_version(lam: Any, physical: str) -> str:
    versions = [v["Version"] for v in lam.list_versions_by_function(FunctionName=physical)["Versions"]]
    numbered = [int(v) for v in versions if v.isdigit()]
    if not numbered:
        return lam.publish_version(FunctionName=physical)["Version"]
    return str(max(numbered))


__all__ = ["ACCOUNT_ID", "Deployer", "Deployment", "deterministic_zip", "function_zip", "layer_zip"]
