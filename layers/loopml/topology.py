"""The one declaration of loopml's resources, read by the CDK app and by the local stack.

Local and cloud must not drift apart, so neither declares resources of its own: buckets, queues,
tables, functions (with their routes, event sources, schedules, environment and grants) and state
machines are listed here once. CDK turns each entry into constructs; the local stack creates the same
names in moto and runs the same handlers.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from loopml import keys
from loopml.names import Runtime, lane_function, lane_prefix

ResourceKind = Literal["bucket", "queue", "table", "state_machine", "function", "secret"]
Attribute = Literal["name", "url", "arn"]
Access = Literal[
    "read", "write", "read_write", "send", "consume", "start", "respond", "update_function", "invoke", "watch"
]
Auth = Literal["none", "api_key", "iam"]
LayerSet = Literal["full", "slim", "compile"]
MODELS_BUCKET = "models"  # its key layout is loopml.keys'

# What each kind of resource can be granted, and which attributes a ref may take; CDK applies each
# pair with the resource's grant_* (infra.constructs.resources) and the local stack enforces the same
# pairs call by call (loopml_dev.local.grants).
ACCESSES: dict[str, frozenset[str]] = {
    "bucket": frozenset({"read", "write", "read_write"}),
    "queue": frozenset({"send", "consume"}),
    "table": frozenset({"read", "write", "read_write"}),
    "secret": frozenset({"read"}),
    "state_machine": frozenset({"start", "read", "respond"}),
    "function": frozenset({"invoke", "update_function", "watch"}),
}
ATTRIBUTES: dict[str, frozenset[str]] = {
    "bucket": frozenset({"name", "arn"}),
    "queue": frozenset({"name", "url", "arn"}),
    "table": frozenset({"name", "arn"}),
    "secret": frozenset({"name", "arn"}),
    "state_machine": frozenset({"name", "arn"}),
    "function": frozenset({"name", "arn"}),
}


class Ref(BaseModel, frozen=True):
    """A reference to another declared resource, resolved per target (CDK token or local value)."""

    kind: ResourceKind
    name: str
    attribute: Attribute = "name"


class Grant(BaseModel, frozen=True):
    """One permission of a function. On a bucket, ``prefixes`` scope it to those key prefixes
    (``loopml.keys``): a function reads and writes only what it owns."""

    kind: ResourceKind
    name: str
    access: Access
    prefixes: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _scoped(self) -> Grant:
        if self.kind == "bucket":
            if not self.prefixes or not all(p.endswith("/") for p in self.prefixes):
                raise ValueError(f"a grant on bucket {self.name!r} names its key prefixes, each ending in '/'")
            unknown = [p for p in self.prefixes if p not in (*keys.PREFIXES, keys.DRIFT)]
            if self.name == MODELS_BUCKET and unknown:
                raise ValueError(f"grant on bucket {self.name!r}: {unknown} are not prefixes of loopml.keys")
        elif self.prefixes:
            raise ValueError(f"only bucket grants take prefixes (a {self.kind} {self.name!r} has none)")
        return self


def bucket(name: str, access: Access, *prefixes: str) -> Grant:
    return Grant(kind="bucket", name=name, access=access, prefixes=prefixes)


class Route(BaseModel, frozen=True):
    method: Literal["GET", "POST", "PUT", "DELETE"]
    path: str
    auth: Auth = "api_key"
    query: tuple[str, ...] = ()  # the query parameters it takes: any other is refused (422)


class EventSource(BaseModel, frozen=True):
    queue: str
    batch_size: int = 100
    max_batching_window_s: int = 1


class Schedule(BaseModel, frozen=True):
    name: str
    rate_minutes: int
    enabled: bool = True
    input: dict[str, object] = Field(default_factory=dict)


class Notification(BaseModel, frozen=True):
    """Object-created events for keys under ``prefix`` (and ending with ``suffix``, if set) sent to a queue.

    S3 refuses two notifications whose filters overlap, so prefixes of one bucket must not nest. Local
    and cloud deliver the same S3 event records (keys URL-encoded, an ``s3:TestEvent`` first).
    """

    prefix: str = Field(min_length=1)
    queue: str
    suffix: str = ""


class ExecutionWatch(BaseModel, frozen=True):
    """Invoke the function when an execution of a declared state machine ends without its own cleanup.

    ABORTED and TIMED_OUT executions run no Catch: EventBridge's "Step Functions Execution Status
    Change" events (in the cloud) or the local stack's watcher deliver them to the function instead.
    """

    state_machine: str
    statuses: tuple[Literal["ABORTED", "TIMED_OUT", "FAILED", "SUCCEEDED"], ...] = ("ABORTED", "TIMED_OUT")


class BucketSpec(BaseModel, frozen=True):
    name: str
    notifications: tuple[Notification, ...] = ()

    @model_validator(mode="after")
    def _disjoint_prefixes(self) -> BucketSpec:
        prefixes = [n.prefix for n in self.notifications]
        for i, a in enumerate(prefixes):
            for b in prefixes[i + 1 :]:
                if a.startswith(b) or b.startswith(a):
                    raise ValueError(f"bucket {self.name!r}: notification prefixes {a!r} and {b!r} overlap")
        return self


class QueueSpec(BaseModel, frozen=True):
    name: str
    visibility_timeout_s: int = 60
    max_receive_count: int = 3
    retention_days: int = 14


class TableSpec(BaseModel, frozen=True):
    name: str
    partition_key: str = "id"
    ttl_attribute: str | None = "expiration"


class SecretSpec(BaseModel, frozen=True):
    """A generated secret (e.g. the HMAC key for subject ids): Secrets Manager in the cloud and in moto."""

    name: str


class FunctionSpec(BaseModel, frozen=True):
    name: str
    description: str
    code: str = ""  # the folder under functions/ (default: the name): one model's lane shares the inference code
    handler: str = "app.handler"
    memory_mb: int = 1024
    timeout_s: int = 30
    environment: dict[str, str] = Field(default_factory=dict)
    resources: dict[str, Ref] = Field(default_factory=dict)
    grants: tuple[Grant, ...] = ()
    routes: tuple[Route, ...] = ()
    event_sources: tuple[EventSource, ...] = ()
    schedules: tuple[Schedule, ...] = ()
    execution_watches: tuple[ExecutionWatch, ...] = ()
    alias: str = "live"
    # which layers the function runs with (layers/build.py FUNCTION_LAYERS): full (scikit-learn), slim
    # (onnxruntime, no scikit-learn: compiled-runtime inference), compile (full + skl2onnx: registers models)
    layer_set: LayerSet = "full"
    snap_start: bool = False  # Lambda SnapStart on published versions (AWS; the local stack cold-starts)

    @property
    def folder(self) -> str:
        return self.code or self.name


class ModelSpec(BaseModel, frozen=True):
    """A model the deployment serves, each in its own lane: its own inference function and alias ``live``
    (one model's canary, cold start or failure never touches another's), routes under
    ``/models/<name>/``, and a drift evaluation on its own schedule. The first model keeps the
    un-prefixed routes (``/predict``, ...)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    drift_every_minutes: int = Field(60, ge=5)
    # compiled: onnxruntime and the slim layer, no scikit-learn (FACTS.md: 0.5 GB is plenty); sklearn: the
    # pickle and the full layer, for a model that does not convert (registration says why)
    runtime: Runtime = "compiled"
    memory_mb: int | None = Field(None, ge=128, le=10240)  # default: 512 compiled, 2048 sklearn
    snap_start: bool = False  # AWS only: Lambda SnapStart on published versions (after-restore hooks: loopml.lifecycle)

    @property
    def memory(self) -> int:
        return self.memory_mb or (512 if self.runtime == "compiled" else 2048)


class StateMachineSpec(BaseModel, frozen=True):
    name: str
    definition: str  # path relative to infra/
    substitutions: dict[str, Ref] = Field(default_factory=dict)


class Topology(BaseModel, frozen=True):
    models: tuple[ModelSpec, ...] = ()
    buckets: tuple[BucketSpec, ...]
    queues: tuple[QueueSpec, ...]
    tables: tuple[TableSpec, ...] = ()
    secrets: tuple[SecretSpec, ...] = ()
    functions: tuple[FunctionSpec, ...]
    state_machines: tuple[StateMachineSpec, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> Topology:
        """What CDK would refuse at synth or AWS at deploy, refused here, so the local stack runs only
        declarations the cloud would run: every ref and grant names a declared resource with an access
        or attribute that kind has, every consumer fits its queue's visibility timeout, every route is
        declared once."""
        declared = {
            "bucket": {b.name for b in self.buckets},
            "queue": {q.name for q in self.queues},
            "table": {t.name for t in self.tables},
            "secret": {s.name for s in self.secrets},
            "state_machine": {m.name for m in self.state_machines},
            "function": {f.name for f in self.functions},
        }
        problems: list[str] = []

        def check_ref(where: str, ref: Ref) -> None:
            if ref.name not in declared[ref.kind]:
                problems.append(f"{where}: {ref.kind} {ref.name!r} is referenced but not declared")
            elif ref.attribute not in ATTRIBUTES[ref.kind]:
                problems.append(f"{where}: a {ref.kind} has no {ref.attribute!r} attribute (ref to {ref.name!r})")

        routes: dict[tuple[str, str], str] = {}
        for spec in self.functions:
            for variable, ref in spec.resources.items():
                check_ref(f"function {spec.name!r} {variable}", ref)
            for grant in spec.grants:
                if grant.name not in declared[grant.kind]:
                    problems.append(
                        f"function {spec.name!r}: {grant.kind} {grant.name!r} is referenced but not declared"
                    )
                elif grant.access not in ACCESSES[grant.kind]:
                    problems.append(
                        f"function {spec.name!r}: access {grant.access!r} does not apply to a {grant.kind} "
                        f"({grant.name!r}; it takes {', '.join(sorted(ACCESSES[grant.kind]))})"
                    )
            for source in spec.event_sources:
                if source.queue not in declared["queue"]:
                    problems.append(f"function {spec.name!r}: queue {source.queue!r} is referenced but not declared")
                    continue
                visibility = self.queue(source.queue).visibility_timeout_s
                if visibility < spec.timeout_s:  # Lambda refuses such a mapping at deploy time
                    problems.append(
                        f"queue {source.queue!r} has a {visibility}s visibility timeout, shorter than "
                        f"{spec.name!r}'s {spec.timeout_s}s timeout: a message would be redelivered while "
                        "still being processed"
                    )
            for watch in spec.execution_watches:
                if watch.state_machine not in declared["state_machine"]:
                    problems.append(
                        f"function {spec.name!r}: state_machine {watch.state_machine!r} is referenced but not declared"
                    )
            for route in spec.routes:
                other = routes.setdefault((route.method, route.path), spec.name)
                if other != spec.name or sum(r == route for r in spec.routes) > 1:
                    problems.append(f"route {route.method} {route.path} is declared twice ({other}, {spec.name})")
        for machine in self.state_machines:
            for variable, ref in machine.substitutions.items():
                check_ref(f"state machine {machine.name!r} {variable}", ref)
        if problems:
            raise ValueError("; ".join(dict.fromkeys(problems)))
        return self

    def notifications(self, bucket: str) -> tuple[Notification, ...]:
        """The bucket's notifications whose queue this topology declares.

        A partial topology (a test's subset without the queue) leaves the notification out instead of
        failing; ``TOPOLOGY`` itself is checked by ``tests/infra`` to declare every notified queue.
        """
        queues = {q.name for q in self.queues}
        return tuple(n for n in self.bucket(bucket).notifications if n.queue in queues)

    def inference_function(self, model: str) -> FunctionSpec:
        """The function serving ``model`` (KeyError when no declared model has that name)."""
        for spec in self.functions:
            if spec.folder == "inference" and spec.environment.get("MODEL_NAME") == model:
                return spec
        raise KeyError(model)

    def function(self, name: str) -> FunctionSpec:
        for spec in self.functions:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def queue(self, name: str) -> QueueSpec:
        for spec in self.queues:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def bucket(self, name: str) -> BucketSpec:
        for spec in self.buckets:
            if spec.name == name:
                return spec
        raise KeyError(name)


def physical_name(stage: str, name: str) -> str:
    """Names carry the stage so two stages live side by side in one account."""
    return f"loopml-{stage}-{name}"


def dlq_name(queue: str) -> str:
    return f"{queue}-dlq"


_POWERTOOLS = {"POWERTOOLS_METRICS_NAMESPACE": "loopml", "POWERTOOLS_LOG_LEVEL": "INFO"}

# The models this deployment serves. Adding one: a line here, then `loopml train --model NAME --local
# --champion` after the next `make up` (or `cdk deploy`), which gives it its lane.
MODELS: tuple[ModelSpec, ...] = (ModelSpec(name="default"),)

_INFERENCE_ROUTES = (
    Route(method="POST", path="/predict", query=("explain",)),
    Route(method="GET", path="/model", query=("profile",)),
    Route(method="GET", path="/health", auth="none"),
    Route(method="GET", path="/openapi.json", auth="none"),
    Route(method="GET", path="/swagger", auth="none"),
)


def inference_lane(model: ModelSpec, first_model: str) -> FunctionSpec:
    """One model's inference function: ``inference`` for the first model, ``inference-<model>`` after."""
    prefixed = tuple(r.model_copy(update={"path": lane_prefix(model.name) + r.path}) for r in _INFERENCE_ROUTES)
    return FunctionSpec(
        name=lane_function("inference", first_model, model.name),
        code="inference",
        description=f"Serves {model.name}: predictions with confidence, explanations and graceful degradation.",
        memory_mb=model.memory,
        timeout_s=29,
        layer_set="slim" if model.runtime == "compiled" else "full",
        snap_start=model.snap_start,
        environment={
            **_POWERTOOLS,
            "POWERTOOLS_SERVICE_NAME": "inference",
            "MODEL_NAME": model.name,
            "MODEL_RUNTIME": model.runtime,
        },
        resources={
            "MODEL_BUCKET": Ref(kind="bucket", name="models"),
            "CAPTURE_QUEUE_URL": Ref(kind="queue", name="capture", attribute="url"),
            "SUBJECT_KEY_SECRET_ARN": Ref(kind="secret", name="subject-key", attribute="arn"),
        },
        grants=(
            bucket("models", "read", keys.MODELS),  # the registry: metadata, artifacts, aliases
            Grant(kind="queue", name="capture", access="send"),
            Grant(kind="secret", name="subject-key", access="read"),
        ),
        routes=(*(_INFERENCE_ROUTES if model.name == first_model else ()), *prefixed),
    )


def declaration(models: tuple[ModelSpec, ...] = MODELS) -> Topology:
    """The whole deployment for ``models``: each model's lane, and the functions every lane shares."""
    if not models:
        raise ValueError("a deployment declares at least one model")
    lanes = tuple(inference_lane(model, models[0].name) for model in models)
    return Topology(
        models=models,
        buckets=(
            BucketSpec(
                name="models",
                notifications=(  # uploads: see loopml.starter (retraining data) and loopml.batch (scoring)
                    Notification(prefix=keys.INCOMING, queue="uploads"),
                    Notification(prefix=keys.BATCH_INPUT, queue="batch"),
                ),
            ),
        ),
        queues=(
            QueueSpec(name="capture", visibility_timeout_s=120),
            QueueSpec(name="feedback", visibility_timeout_s=180),  # 6x the consumer's timeout
            QueueSpec(name="uploads", visibility_timeout_s=900, max_receive_count=3),  # 3x the starter's timeout
            QueueSpec(name="batch", visibility_timeout_s=5400, max_receive_count=3),  # 6x the batch timeout
        ),
        tables=(
            TableSpec(name="prediction-index"),  # prediction_id -> model, version, subject; TTL 400 days
            TableSpec(name="review"),  # the human review list
            TableSpec(name="subjects", ttl_attribute=None),  # opt-outs, erasures, objects per subject
        ),
        secrets=(SecretSpec(name="subject-key"),),  # HMAC key: subject ids are stored only as keyed hashes
        functions=(
            *lanes,
            FunctionSpec(
                name="feedback",
                description="Feedback and review API, right to erasure, and the capture consumer.",
                memory_mb=1024,
                timeout_s=30,
                environment={**_POWERTOOLS, "POWERTOOLS_SERVICE_NAME": "feedback", "MODEL_NAME": models[0].name},
                resources={
                    "MODEL_BUCKET": Ref(kind="bucket", name="models"),
                    "FEEDBACK_QUEUE_URL": Ref(kind="queue", name="feedback", attribute="url"),
                    "PREDICTION_INDEX_TABLE": Ref(kind="table", name="prediction-index"),
                    "REVIEW_TABLE": Ref(kind="table", name="review"),
                    "SUBJECTS_TABLE": Ref(kind="table", name="subjects"),
                    "SUBJECT_KEY_SECRET_ARN": Ref(kind="secret", name="subject-key", attribute="arn"),
                },
                grants=(
                    bucket("models", "read", keys.MODELS),  # schemas: classes and sensitive features
                    bucket("models", "read_write", keys.CAPTURED),  # the dataset; erasure rewrites and deletes
                    Grant(kind="queue", name="feedback", access="send"),
                    Grant(kind="queue", name="capture", access="consume"),
                    Grant(kind="queue", name="feedback", access="consume"),
                    Grant(kind="table", name="prediction-index", access="read_write"),
                    Grant(kind="table", name="review", access="read_write"),
                    Grant(kind="table", name="subjects", access="read_write"),
                    Grant(kind="secret", name="subject-key", access="read"),
                ),
                routes=(
                    Route(method="POST", path="/feedback"),
                    Route(method="GET", path="/review", query=("limit",)),
                    Route(method="POST", path="/review/{prediction_id}"),
                    Route(method="DELETE", path="/subjects/{subject_id}", auth="iam"),
                    # every model's lane; the model is the prediction's, from the index
                    Route(method="POST", path=lane_prefix("{model}") + "/feedback"),
                    Route(method="GET", path=lane_prefix("{model}") + "/review", query=("limit",)),
                    Route(method="POST", path=lane_prefix("{model}") + "/review/{prediction_id}"),
                ),
                event_sources=(
                    EventSource(queue="capture", batch_size=100, max_batching_window_s=1),
                    EventSource(queue="feedback", batch_size=100, max_batching_window_s=1),
                ),
            ),
            FunctionSpec(
                name="retrain",
                description="Retraining steps (prepare, train, gate, canary, promote, roll back) and approvals.",
                memory_mb=3008,
                timeout_s=900,
                layer_set="compile",  # registers challengers: compiles them to ONNX
                environment={
                    **_POWERTOOLS,
                    "POWERTOOLS_SERVICE_NAME": "retrain",
                    "MODEL_NAME": models[0].name,  # INFERENCE_FUNCTION serves it; every other model its own lane
                    "MODELS": ",".join(m.name for m in models),
                },
                resources={
                    "MODEL_BUCKET": Ref(kind="bucket", name="models"),
                    "INFERENCE_FUNCTION": Ref(kind="function", name="inference"),
                },
                grants=(
                    bucket(
                        "models", "read_write", keys.MODELS, keys.DATASETS, keys.APPROVALS, keys.RETRAIN
                    ),  # registers
                    bucket("models", "read", keys.CAPTURED, keys.INCOMING),  # labelled feedback, uploaded data
                    *(  # each model's lane: publish, route, watch its canary
                        Grant(kind="function", name=lane.name, access=access)
                        for lane in lanes
                        for access in ("update_function", "invoke", "watch")
                    ),
                    Grant(kind="state_machine", name="retrain", access="start"),
                    Grant(kind="state_machine", name="retrain", access="respond"),  # approvals: task tokens
                ),
                routes=(Route(method="POST", path="/approvals/{token}", auth="iam"),),
                execution_watches=(ExecutionWatch(state_machine="retrain"),),  # aborted runs: champion restored
            ),
            FunctionSpec(
                name="drift",
                description="Drift, performance, quality and bias evaluation, reports, the guarded retraining trigger.",
                memory_mb=2048,
                timeout_s=300,
                environment={**_POWERTOOLS, "POWERTOOLS_SERVICE_NAME": "drift", "MODEL_NAME": models[0].name},
                resources={
                    "MODEL_BUCKET": Ref(kind="bucket", name="models"),
                    "RETRAIN_STATE_MACHINE_ARN": Ref(kind="state_machine", name="retrain", attribute="arn"),
                },
                grants=(
                    bucket("models", "read", keys.MODELS, keys.CAPTURED),
                    bucket("models", "read_write", keys.DRIFT),  # reports and history
                    bucket("models", "read_write", keys.STARTS),  # retraining claims (loopml.retrain.trigger)
                    Grant(kind="state_machine", name="retrain", access="start"),
                    Grant(kind="state_machine", name="retrain", access="read"),  # running executions (guard)
                ),
                routes=(
                    Route(method="POST", path="/drift/evaluate"),
                    Route(method="GET", path="/drift/latest", query=("model", "model_version")),
                ),
                schedules=tuple(  # each model on its own schedule
                    Schedule(name=f"evaluate-{m.name}", rate_minutes=m.drift_every_minutes, input={"model": m.name})
                    for m in models
                ),
            ),
            FunctionSpec(
                name="starter",
                description="Validates training data uploaded under incoming/<model>/ and starts the retraining.",
                memory_mb=2048,
                timeout_s=300,
                environment={**_POWERTOOLS, "POWERTOOLS_SERVICE_NAME": "starter"},
                resources={
                    "MODEL_BUCKET": Ref(kind="bucket", name="models"),
                    "RETRAIN_STATE_MACHINE_ARN": Ref(kind="state_machine", name="retrain", attribute="arn"),
                },
                grants=(
                    bucket("models", "read", keys.MODELS, keys.INCOMING),
                    bucket("models", "write", keys.INCOMING),  # the report next to each upload
                    bucket("models", "read_write", keys.STARTS),  # retraining claims (loopml.retrain.trigger)
                    Grant(kind="queue", name="uploads", access="consume"),
                    Grant(kind="state_machine", name="retrain", access="start"),
                    Grant(kind="state_machine", name="retrain", access="read"),  # running executions (guard)
                ),
                event_sources=(EventSource(queue="uploads", batch_size=1, max_batching_window_s=0),),
                schedules=(
                    Schedule(
                        name="weekly",
                        rate_minutes=10080,
                        enabled=False,  # off by default: enable it in the declaration (or the console)
                        input={"model": "default", "reason": "scheduled retraining"},
                    ),
                ),
            ),
            FunctionSpec(
                name="batch",
                description="Scores CSV / JSON Lines files uploaded under batch/input/ with the champion.",
                memory_mb=2048,
                timeout_s=900,
                environment={**_POWERTOOLS, "POWERTOOLS_SERVICE_NAME": "batch"},
                resources={"MODEL_BUCKET": Ref(kind="bucket", name="models")},
                grants=(
                    bucket("models", "read", keys.MODELS, keys.BATCH_INPUT),
                    bucket("models", "write", keys.BATCH_OUTPUT),  # scored files and error reports
                    Grant(kind="queue", name="batch", access="consume"),
                ),
                event_sources=(EventSource(queue="batch", batch_size=1, max_batching_window_s=0),),
            ),
        ),
        state_machines=(
            StateMachineSpec(
                name="retrain",
                definition="statemachine/retrain.asl.json",
                substitutions={"RetrainFunctionArn": Ref(kind="function", name="retrain", attribute="arn")},
            ),
        ),
    )


TOPOLOGY = declaration()
