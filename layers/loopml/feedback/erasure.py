"""Right to erasure: remove one subject from the captured dataset and keep them out.

Order matters, so that nothing arriving meanwhile slips through:

1. the subject is marked erased (the consumer drops their records from then on) and an S3 tombstone is
   written (the reader excludes them even if a straggler lands); the tombstone is named by the SHA-256
   of the keyed hash, so no object holds the subject hash itself;
2. every object the consumer recorded for the subject is rewritten without their records, or deleted
   when nothing else is left in it; feedback objects of the same hours are filtered by the removed
   prediction ids too (labels that arrived before their prediction was indexed carry no subject);
3. their predictions are marked erased in the index (later feedback for them is ignored) and their
   review items deleted.

Running it twice is harmless; the receipt says what was done.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from loopml import keys
from loopml.errors import NotFound
from loopml.feedback import layout
from loopml.feedback.models import ErasureReceipt
from loopml.feedback.ports import PredictionIndex, ReviewList, Subjects
from loopml.store import ObjectStore


def erase_subject(
    subject_hash: str,
    store: ObjectStore,
    index: PredictionIndex,
    subjects: Subjects,
    review: ReviewList,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> ErasureReceipt:
    started = time.perf_counter()
    erased_at = clock().isoformat()
    subjects.erase(subject_hash, erased_at)
    store.put(keys.tombstone_key(subject_hash), b'{"erased_at":"%s"}' % erased_at.encode())
    status = subjects.get_many([subject_hash]).get(subject_hash)
    recorded = sorted(status.objects) if status else []
    removed_ids: set[str] = set()
    rewritten = deleted = predictions = feedback = 0
    feedback_keys: set[str] = set()
    for key in recorded:
        if "/predictions/" in key:
            continue
        feedback_keys.add(key)
    for key in [k for k in recorded if "/predictions/" in k]:
        kept, gone = _filter(store, key, lambda r: r.get("subject_hash") == subject_hash)
        removed_ids.update(r["prediction_id"] for r in gone)
        predictions += len(gone)
        changed = _write_back(store, key, kept, bool(gone))
        rewritten += changed == "rewritten"
        deleted += changed == "deleted"
        model_dir = key.split("/predictions/", 1)[0]
        hour = key.split("/predictions/", 1)[1].rsplit("/", 1)[0]
        feedback_keys.update(store.list_keys(f"{model_dir}/feedback/{hour}/"))
    for key in sorted(feedback_keys):
        kept, gone = _filter(
            store,
            key,
            lambda r: r.get("subject_hash") == subject_hash or r.get("prediction_id") in removed_ids,
        )
        feedback += len(gone)
        changed = _write_back(store, key, kept, bool(gone))
        rewritten += changed == "rewritten"
        deleted += changed == "deleted"
    if removed_ids:
        index.mark_erased(removed_ids)
    review_removed = review.delete_many(removed_ids) if removed_ids else 0
    if recorded:
        subjects.remove_objects(subject_hash, recorded)
    return ErasureReceipt(
        subject_hash_digest=keys.tombstone_digest(subject_hash),
        erased_at=erased_at,
        predictions_removed=predictions,
        feedback_removed=feedback,
        objects_rewritten=rewritten,
        objects_deleted=deleted,
        review_items_removed=review_removed,
        duration_ms=round((time.perf_counter() - started) * 1000, 3),
    )


def _filter(
    store: ObjectStore, key: str, drop: Callable[[dict[str, Any]], bool]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    try:
        records = layout.decode(store.get(key))
    except NotFound:
        return [], []
    kept = [r for r in records if not drop(r)]
    gone = [r for r in records if drop(r)]
    return kept, gone


def _write_back(store: ObjectStore, key: str, kept: list[dict[str, Any]], changed: bool) -> str:
    if not changed:
        return "unchanged"
    if kept:
        store.put(key, layout.encode(kept))
        return "rewritten"
    store.delete(key)
    return "deleted"
