"""Builds the feedback function's collaborators once per execution environment."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from loopml.adapters.aws import client
from loopml.adapters.s3 import S3ObjectStore
from loopml.adapters.sqs import SqsSender
from loopml.errors import ModelNotFound
from loopml.feedback.consumer import CaptureConsumer, ConsumerConfig
from loopml.feedback.dynamo import DynamoPredictionIndex, DynamoReviewList, DynamoSubjects
from loopml.feedback.keys import subject_hasher
from loopml.feedback.models import FeedbackSettings
from loopml.feedback.service import FeedbackService
from loopml.registry import ModelMetadata, ModelRegistry

ALIAS_TTL_S = 60.0


class ModelCatalog:
    """Metadata per (model, version), cached (versions are immutable); aliases re-read every minute."""

    def __init__(self, registry: ModelRegistry, serving_ref: str, clock: Callable[[], float] = time.monotonic):
        self._registry = registry
        self._serving_ref = serving_ref
        self._clock = clock
        self._aliases: dict[str, tuple[float, int]] = {}
        self._sensitive: dict[tuple[str, int], tuple[str, ...]] = {}

    @functools.lru_cache(maxsize=64)  # noqa: B019 - one catalog per execution environment
    def metadata(self, model: str, version: int) -> ModelMetadata:
        return self._registry.metadata(model, version)

    def serving_version(self, model: str) -> int:
        cached = self._aliases.get(model)
        if cached is None or self._clock() - cached[0] > ALIAS_TTL_S:
            cached = (self._clock(), self._registry.resolve(model, self._serving_ref))
            self._aliases[model] = cached
        return cached[1]

    def classes(self, model: str, version: int | None) -> list[str | int]:
        resolved = self.serving_version(model) if version is None else version
        return self.metadata(model, resolved).feature_schema.classes

    def sensitive(self, model: str, version: int) -> Iterable[str]:
        """Sensitive feature names; none for a version the registry does not know (remembered too)."""
        key = (model, version)
        if key not in self._sensitive:
            try:
                self._sensitive[key] = tuple(self.metadata(model, version).feature_schema.sensitive_names)
            except ModelNotFound:
                self._sensitive[key] = ()
        return self._sensitive[key]


@dataclass(frozen=True)
class Collaborators:
    store: S3ObjectStore
    index: DynamoPredictionIndex
    subjects: DynamoSubjects
    review: DynamoReviewList
    catalog: ModelCatalog
    service: FeedbackService
    consumer: CaptureConsumer
    hash_subject: Callable[[str], str]


def build(settings: FeedbackSettings, clients: Callable[[str], Any] = client) -> Collaborators:
    store = S3ObjectStore(clients("s3"), settings.model_bucket)
    dynamodb = clients("dynamodb")
    index = DynamoPredictionIndex(dynamodb, settings.prediction_index_table)
    subjects = DynamoSubjects(dynamodb, settings.subjects_table)
    review = DynamoReviewList(dynamodb, settings.review_table)
    catalog = ModelCatalog(ModelRegistry(store), settings.model_version)
    service = FeedbackService(
        index,
        review,
        SqsSender(clients("sqs"), settings.feedback_queue_url),
        catalog.classes,
        settings.model_name,
        settings.pending_window_s,
    )
    consumer = CaptureConsumer(
        store,
        index,
        subjects,
        review,
        ConsumerConfig(
            review_confidence_threshold=settings.review_confidence_threshold,
            review_sample_rate=settings.review_sample_rate,
            index_ttl_s=settings.index_ttl_days * 86400,
            review_ttl_s=settings.review_ttl_days * 86400,
        ),
        catalog.sensitive,
    )
    hasher = subject_hasher(settings.subject_key, settings.subject_key_secret_arn)
    return Collaborators(store, index, subjects, review, catalog, service, consumer, hasher)
