"""The feedback API's domain: accept labels, serve the review list, record reviewer labels.

Does the prediction exist? The capture consumer indexes every stored prediction by id (DynamoDB, one
``BatchGetItem`` per request here). A prediction still in flight (its capture message not consumed yet)
is not indexed, but its id carries its issue time: an unindexed id younger than ``pending_window_s``
is accepted as ``pending`` and joined when the prediction lands (the reader joins by id, whenever the
label arrived); an unindexed id older than that is answered 404, because by then its capture was
either stored or dead-lettered. Labels are checked against the classes of the model version that
made the prediction (the serving version's, for a pending one).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from loopml.capture import Sender, pack_messages
from loopml.errors import InvalidInput, NotFound, TransientError
from loopml.feedback import layout
from loopml.feedback.models import (
    MAX_REVIEW_PAGE,
    FeedbackItem,
    FeedbackReceipt,
    FeedbackRecord,
    FeedbackResponse,
    ItemStatus,
    ReviewPage,
)
from loopml.feedback.ports import PredictionIndex, ReviewList
from loopml.schema import finite_number

ClassesOf = Callable[[str, int | None], list[str | int]]
"""(model, version or None for the serving version) -> that version's classes (none: a regression model)."""


class FeedbackService:
    def __init__(
        self,
        index: PredictionIndex,
        review: ReviewList,
        send: Sender,
        classes_of: ClassesOf,
        model: str,
        pending_window_s: int = 900,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.index = index
        self.review = review
        self.send = send
        self.classes_of = classes_of
        self.model = model
        self.pending_window = timedelta(seconds=pending_window_s)
        self.clock = clock

    def submit(
        self,
        items: list[FeedbackItem],
        *,
        loc: tuple[str | int, ...] = ("body",),
        caller: str | None = None,
        lane: str | None = None,
    ) -> FeedbackResponse:
        """All or nothing: every item is checked before any is queued. ``lane``: the model of the route
        (``/models/<model>/feedback``); a label for another model's prediction is refused."""
        now = self.clock()
        known = self.index.get_many(i.prediction_id for i in items)
        errors: list[dict[str, Any]] = []
        missing: list[str] = []
        records: list[dict[str, Any]] = []
        receipts: list[FeedbackReceipt] = []
        several = len(items) > 1 or loc[-1:] == ("items",)
        for position, item in enumerate(items):
            where = (*loc, position) if several else loc
            entry = known.get(item.prediction_id)
            status: ItemStatus
            if entry is None:
                issued = layout.prediction_time(item.prediction_id)
                if not now - self.pending_window <= issued <= now + timedelta(seconds=60):
                    missing.append(item.prediction_id)
                    continue
                status, model, version = "pending", lane or self.model, None
            else:
                status = "ignored" if entry.opted_out or entry.erased else "accepted"
                model, version = entry.model, entry.model_version
                if lane is not None and model != lane:
                    errors.append(
                        {
                            "loc": [*where, "prediction_id"],
                            "msg": f"made by model {model!r}, not {lane!r}: post it to /models/{model}/feedback",
                            "type": "value_error",
                        }
                    )
                    continue
            label = self._label(item.label, model, version, (*where, "label"), errors)
            feedback_id = uuid.uuid4().hex
            receipts.append(FeedbackReceipt(feedback_id=feedback_id, prediction_id=item.prediction_id, status=status))
            if status == "ignored" or label is None:
                continue
            records.append(
                FeedbackRecord(
                    feedback_id=feedback_id,
                    prediction_id=item.prediction_id,
                    model=model,
                    model_version=version,
                    label=label,
                    source=item.source,
                    comment=item.comment,
                    received_at=now.isoformat(),
                    subject_hash=entry.subject_hash if entry else None,
                    caller=caller,
                ).model_dump(mode="json")
            )
        if missing:
            raise NotFound(f"unknown prediction_id: {', '.join(missing)}")
        if errors:
            raise InvalidInput("labels that do not fit the model that made the prediction", errors)
        if records and self.send(pack_messages(records)):
            raise TransientError("the feedback queue did not accept the labels; retry")
        return FeedbackResponse(accepted=len(records), items=receipts)

    def _label(
        self,
        label: str | int | float,
        model: str,
        version: int | None,
        loc: tuple[str | int, ...],
        errors: list[dict[str, Any]],
    ) -> str | int | float | None:
        """The class as the model spells it ("1" -> 1), a regression target as a float, or None with the
        error recorded."""
        classes = self.classes_of(model, version)
        found = _match(label, classes)
        if found is None:
            msg = f"{label!r} is not one of {classes}" if classes else f"{label!r} is not a finite number"
            errors.append({"loc": list(loc), "msg": msg, "type": "value_error"})
        return found

    def review_page(self, limit: int, model: str | None = None) -> ReviewPage:
        """Most uncertain first (least confident, widest interval): the labels that teach the model most.
        ``model``: that lane's only."""
        if not 1 <= limit <= MAX_REVIEW_PAGE:
            raise InvalidInput(
                f"limit must be between 1 and {MAX_REVIEW_PAGE}",
                [{"loc": ["query", "limit"], "msg": f"must be 1-{MAX_REVIEW_PAGE}", "type": "value_error"}],
            )
        items = [i for i in self.review.pending() if model is None or i.model == model]
        pending = sorted(items, key=lambda i: (-i.uncertainty, i.timestamp, i.prediction_id))
        return ReviewPage(items=pending[:limit], pending=len(pending))

    def review_label(
        self, prediction_id: str, label: str | int | float, comment: str | None, lane: str | None = None
    ) -> FeedbackResponse:
        """A reviewer's label: wins over user labels in the dataset, and closes the review item."""
        try:
            layout.prediction_time(prediction_id)
        except ValueError:
            raise InvalidInput(
                "prediction_id must be 32 lowercase hex digits",
                [{"loc": ["path", "prediction_id"], "msg": "not a prediction id", "type": "value_error"}],
            ) from None
        item = FeedbackItem(prediction_id=prediction_id, label=label, source="reviewer", comment=comment)
        response = self.submit([item], loc=("body",), lane=lane)
        entry = self.index.get_many([prediction_id]).get(prediction_id)
        classes = (
            self.classes_of(entry.model, entry.model_version) if entry else self.classes_of(lane or self.model, None)
        )
        canonical = _match(label, classes)
        self.review.mark_reviewed(prediction_id, label if canonical is None else canonical)
        return response


def _match(label: str | int | float, classes: list[str | int]) -> str | int | float | None:
    if not classes:  # a regression model: any finite number ("3.5" too)
        return finite_number(label)
    for cls in classes:
        if str(cls) == str(label):
            return cls
    return None
