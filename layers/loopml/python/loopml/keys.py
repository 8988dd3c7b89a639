"""The models bucket's key layout: every top-level prefix, defined once.

The library builds its keys from these, the declaration (``loopml.topology``) scopes each function's
grants and the S3 notifications with them, and the CDK app turns those grants into IAM statements on
``<prefix>*``, so a function can read and write only what it owns.

::

    models/<model>/v<N>/...          the registry: versions, artifacts (SHA-256 verified), aliases, history
    models/<model>/drift/...         drift config, reports, history, latest, trigger claims
    captured/<model>/...             predictions and labels (the dataset), captured/_erased/ tombstones
    datasets/<model>/...             training data: base files, CLI uploads, retraining snapshots
    incoming/<model>/<file>          uploads that start a retraining, with their reports
    batch/input/..., batch/output/   files to score, and what scoring wrote
    approvals/<id>.json              pending human approvals and their decisions
    retrain/<model>/<run>/...        run state of the retraining workflow; retrain/locks/<model>.json
"""

from __future__ import annotations

MODELS = "models/"
DRIFT = "models/*/drift/"  # a grant pattern: the drift part of every model's folder
CAPTURED = "captured/"
DATASETS = "datasets/"
INCOMING = "incoming/"
BATCH_INPUT = "batch/input/"
BATCH_OUTPUT = "batch/output/"
APPROVALS = "approvals/"
RETRAIN = "retrain/"

PREFIXES = (MODELS, CAPTURED, DATASETS, INCOMING, BATCH_INPUT, BATCH_OUTPUT, APPROVALS, RETRAIN)


def object_pattern(prefix: str) -> str:
    """The IAM object-key pattern a grant on ``prefix`` covers."""
    return f"{prefix}*"


def covers(prefix: str, key: str) -> bool:
    """Whether a grant on ``prefix`` (``*`` matching one path segment) covers ``key``."""
    want, have = prefix.rstrip("/").split("/"), key.split("/")
    if len(have) <= len(want):
        return False
    return all(w in ("*", h) for w, h in zip(want, have, strict=False))
