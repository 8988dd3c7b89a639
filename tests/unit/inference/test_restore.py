"""SnapStart: every environment restored from one snapshot refreshes what it must not share with the others."""

from __future__ import annotations

import random

import numpy as np

from loopml import lifecycle
from loopml.adapters.aws import client
from loopml.feedback.privacy import LazyHasher
from loopml.inference import wiring


def test_after_restore_seeds_clients_and_the_subject_key_are_refreshed(aws_env: None) -> None:
    keys = iter([b"k" * 32, b"r" * 32])  # the key in the snapshot, then the one loaded after restore
    hasher = LazyHasher(lambda: next(keys))
    wiring.refresh_on_restore(hasher)
    wiring.refresh_on_restore(hasher)  # registering the same hooks twice runs them once
    snapshot_hash = hasher("subject-1")
    s3 = client("s3")
    random.seed(7)
    np.random.seed(7)
    in_snapshot = (random.random(), np.random.random())
    random.seed(7)
    np.random.seed(7)  # what every restored copy of the snapshot would draw next, unrefreshed

    lifecycle.run_after_restore()

    assert (random.random(), np.random.random()) != in_snapshot
    assert client("s3") is not s3  # a new connection pool, not the snapshot's
    assert hasher("subject-1") != snapshot_hash  # the key was loaded again (here: a rotated one)
