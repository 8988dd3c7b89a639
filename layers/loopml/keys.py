"""The models bucket's key layout, defined once: every prefix and every key any part of loopml builds.

The library builds its keys here, the declaration (``loopml.topology``) scopes each function's grants
and the S3 notifications with the prefixes, and the CDK app turns those grants into IAM statements on
``<prefix>*`` (and its lifecycle rules on them), so a function can read and write only what it owns.

::

    models/<model>/v<N>/model.joblib|onnx(.sha256), metadata.json, .claim   the registry: immutable versions
    models/<model>/aliases/<alias>.json, history/<stamp>.json          aliases and the deployment history
    models/<model>/drift/config.json, latest.json                      drift config, latest run
    models/<model>/drift/v<N>/reports/<run>.json|html, history/<run>   reports and compact history
    captured/<model>/<kind>/dt=YYYY-MM-DD/hour=HH/<digest>.jsonl.gz    predictions and labels (the dataset)
    captured/_erased/<digest>.json                                     erasure tombstones
    datasets/<model>/base|uploads|retrain/<run>/...                    training data and run snapshots
    incoming/<model>/<file>                                            uploads that start a retraining
    batch/input/<model>/<file>, batch/output/<model>/<file>            files to score, what scoring wrote
    approvals/<id>.json                                                pending human approvals, decisions
    retrain/<model>/<run>/..., retrain/locks/<model>.json              retraining run state and locks
    starts/<model>/<slot>.json                                         retraining starts: claims and ledger
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import date, datetime
from typing import Literal

from loopml.names import validate_model_name
from loopml.times import utc

MODELS = "models/"
DRIFT = "models/*/drift/"  # a grant pattern: the drift part of every model's folder
CAPTURED = "captured/"
DATASETS = "datasets/"
INCOMING = "incoming/"
BATCH_INPUT = "batch/input/"
BATCH_OUTPUT = "batch/output/"
APPROVALS = "approvals/"
RETRAIN = "retrain/"
STARTS = "starts/"

PREFIXES = (MODELS, CAPTURED, DATASETS, INCOMING, BATCH_INPUT, BATCH_OUTPUT, APPROVALS, RETRAIN, STARTS)


def object_pattern(prefix: str) -> str:
    """The IAM object-key pattern a grant on ``prefix`` covers."""
    return f"{prefix}*"


def covers(prefix: str, key: str) -> bool:
    """Whether a grant on ``prefix`` (``*`` matching one path segment) covers ``key``."""
    want, have = prefix.rstrip("/").split("/"), key.split("/")
    if len(have) <= len(want):
        return False
    return all(w in ("*", h) for w, h in zip(want, have, strict=False))


# --- the registry ----------------------------------------------------------------------------------
ARTIFACT = "model.joblib"
COMPILED = "model.onnx"  # the compiled form (loopml.compiled): no pickle
METADATA = "metadata.json"


def model_prefix(model: str) -> str:
    return f"{MODELS}{validate_model_name(model)}/"


def version_prefix(model: str, version: int) -> str:
    return f"{model_prefix(model)}v{version}/"


def alias_key(model: str, alias: str) -> str:
    return f"{model_prefix(model)}aliases/{alias}.json"


def history_prefix(model: str) -> str:
    return f"{model_prefix(model)}history/"


# --- drift -----------------------------------------------------------------------------------------
def drift_prefix(model: str) -> str:
    return f"{model_prefix(model)}drift/"


def drift_config_key(model: str) -> str:
    return f"{drift_prefix(model)}config.json"


def drift_latest_key(model: str) -> str:
    return f"{drift_prefix(model)}latest.json"


def drift_report_key(model: str, version: int, run_id: str, ext: str = "json") -> str:
    return f"{drift_prefix(model)}v{version}/reports/{run_id}.{ext}"


def drift_history_prefix(model: str, version: int) -> str:
    return f"{drift_prefix(model)}v{version}/history/"


# --- captured data ---------------------------------------------------------------------------------
CapturedKind = Literal["predictions", "feedback"]
ERASED = f"{CAPTURED}_erased/"


def captured_prefix(model: str, kind: CapturedKind) -> str:
    return f"{CAPTURED}{model}/{kind}/"


def captured_day_prefix(model: str, kind: CapturedKind, day: date) -> str:
    return f"{captured_prefix(model, kind)}dt={day.isoformat()}/"


def captured_hour_prefix(model: str, kind: CapturedKind, moment: datetime) -> str:
    moment = utc(moment)
    return f"{captured_day_prefix(model, kind, moment.date())}hour={moment.hour:02d}/"


def captured_key(model: str, kind: CapturedKind, moment: datetime, message_ids: Iterable[str]) -> str:
    """Deterministic: the same messages in the same partition always give the same key."""
    digest = hashlib.sha256("\n".join(sorted(set(message_ids))).encode()).hexdigest()[:32]
    return f"{captured_hour_prefix(model, kind, moment)}{digest}.jsonl.gz"


def tombstone_key(subject_hash: str) -> str:
    """Keyed by a hash of the subject hash, so no object in the bucket holds the subject hash itself."""
    return f"{ERASED}{tombstone_digest(subject_hash)}.json"


def tombstone_digest(subject_hash: str) -> str:
    return hashlib.sha256(subject_hash.encode()).hexdigest()


# --- training data, uploads, batch, approvals ------------------------------------------------------
def dataset_key(model: str, *parts: str) -> str:
    """``datasets/<model>/base/<file>``, ``.../uploads/<file>``, ``.../retrain/<run>/<name>.csv``."""
    return f"{DATASETS}{model}/" + "/".join(parts)


def batch_output_key(model: str, name: str) -> str:
    return f"{BATCH_OUTPUT}{model}/{name}"


def approval_key(approval: str, suffix: str = "") -> str:
    return f"{APPROVALS}{approval}{suffix}.json"


# --- retraining runs -------------------------------------------------------------------------------
def run_prefix(model: str, run_id: str) -> str:
    return f"{RETRAIN}{model}/{run_id}/"


def lock_key(model: str) -> str:
    return f"{RETRAIN}locks/{validate_model_name(model)}.json"


def starts_prefix(model: str) -> str:
    return f"{STARTS}{validate_model_name(model)}/"


def start_claim_key(model: str, slot: str) -> str:
    return f"{starts_prefix(model)}{slot}.json"
