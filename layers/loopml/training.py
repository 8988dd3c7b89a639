"""Training: one scikit-learn Pipeline per feature schema and task, with held-out validation metrics.

The same code trains the first model on a laptop and every challenger in the retraining workflow, so
a model's behaviour never depends on where it was trained. Seeds are fixed: the same data and params
give the same model. A user's registered estimator is refitted here too (a clone, ``user_model``), and
``trained_model`` is the one ending of a recipe's training, a refit and a registration. Regression
models carry a split-conformal interval (``conformal_halfwidth``) from their validation residuals.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from loopml.compilation import Compiled, compile_or_reason
from loopml.errors import InsufficientData, InvalidInput
from loopml.params import FOREST_LEAF, ModelType, TrainingParams
from loopml.registry import (
    CompiledForm,
    DataLineage,
    ModelMetadata,
    ModelRegistry,
    library_versions,
    serialize_bundle,
)
from loopml.schema import CATEGORY_MISSING, FeatureKind, FeatureSchema, Task, encode_targets, to_matrix
from loopml.user_model import UserModel, refit_copy

RECIPES: dict[Task, tuple[ModelType, ...]] = {
    "classification": ("logistic_regression", "hist_gradient_boosting", "random_forest"),
    "regression": ("ridge", "hist_gradient_boosting", "random_forest"),
}
INTERVAL_COVERAGE = 0.9  # of a regression prediction's interval (split-conformal on validation residuals)
MIN_ROWS = 50
MIN_PER_CLASS = 5


class ValidationMetrics(BaseModel):
    n: int
    accuracy: float
    f1_macro: float
    roc_auc: float | None
    log_loss: float
    calibration_error: float


class RegressionMetrics(BaseModel):
    n: int
    rmse: float
    mae: float
    r2: float | None  # None when the rows' targets do not vary
    interval_coverage: float  # share of rows whose value fell inside the prediction interval
    interval_halfwidth: float


@dataclass
class TrainedModel:
    """What ``train`` returns: the bundle to pickle plus everything the registry records."""

    bundle: dict[str, Any]
    schema: FeatureSchema
    params: TrainingParams
    metrics: ValidationMetrics | RegressionMetrics
    reference_matrix: np.ndarray
    reference_proba: np.ndarray  # regression: the predicted values
    reference_labels: list[Any]
    notes: list[str] = field(default_factory=list)  # what the user should know (columns left out, ...)
    compiled: Compiled | None = None  # the ONNX form, verified on the reference rows (loopml.compilation)
    not_compiled: str | None = None  # why there is none

    def register(self, registry: ModelRegistry, meta: ModelMetadata, new_contract: bool = False) -> ModelMetadata:
        """The version, with its compiled form when it has one: the one way a trained model is registered."""
        return registry.register(
            meta,
            serialize_bundle(self.bundle),
            new_contract=new_contract,
            compiled=self.compiled.onnx if self.compiled else None,
        )


def build_pipeline(schema: FeatureSchema, params: TrainingParams) -> Pipeline:
    if params.model_type == "user_estimator":
        raise InvalidInput("a user's estimator is refitted from its registered version, not built from params")
    if params.model_type not in RECIPES[schema.task]:
        raise InvalidInput(
            f"model_type {params.model_type} does not do {schema.task}: use one of {list(RECIPES[schema.task])}"
        )
    numeric = schema.indices(FeatureKind.numeric)
    categorical = schema.indices(FeatureKind.categorical)
    transformers: list[tuple[str, Any, list[int]]] = []
    if numeric:
        transformers.append(
            (
                "numeric",
                Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]),
                numeric,
            )
        )
    if categorical:
        encoder = OneHotEncoder(
            categories=[[*schema.features[j].categories, CATEGORY_MISSING] for j in categorical],
            handle_unknown="ignore",
            sparse_output=False,
            dtype=np.float64,
        )
        transformers.append(("categorical", encoder, categorical))
    prep = ColumnTransformer(transformers, sparse_threshold=0.0)
    estimator: Any
    if schema.regression:
        return Pipeline([("prep", prep), ("model", _regressor(params))])
    if params.model_type == "logistic_regression":
        estimator = LogisticRegression(C=params.regularization_c, max_iter=params.max_iter, random_state=params.seed)
    elif params.model_type == "hist_gradient_boosting":
        estimator = HistGradientBoostingClassifier(
            learning_rate=params.learning_rate,
            max_iter=params.n_estimators,
            max_depth=params.max_depth,
            random_state=params.seed,
        )
    else:
        estimator = RandomForestClassifier(
            n_estimators=params.n_estimators,
            max_depth=params.max_depth,
            min_samples_leaf=params.min_samples_leaf or FOREST_LEAF["classification"],
            random_state=params.seed,
            n_jobs=1,
        )
    return Pipeline([("prep", prep), ("model", estimator)])


def _regressor(params: TrainingParams) -> Any:
    if params.model_type == "ridge":
        return Ridge(alpha=1.0 / params.regularization_c)
    if params.model_type == "hist_gradient_boosting":
        return HistGradientBoostingRegressor(
            learning_rate=params.learning_rate,
            max_iter=params.n_estimators,
            max_depth=params.max_depth,
            random_state=params.seed,
        )
    return RandomForestRegressor(
        n_estimators=params.n_estimators,
        max_depth=params.max_depth,
        min_samples_leaf=params.min_samples_leaf or FOREST_LEAF["regression"],
        random_state=params.seed,
        n_jobs=1,
    )


def check_trainable(labels: Sequence[Any], classes: Sequence[str | int]) -> None:
    """Refuse data that cannot give an honest model, naming what is missing (``classes`` empty: regression)."""
    if len(labels) < MIN_ROWS:
        raise InsufficientData(f"{len(labels)} labelled rows; need at least {MIN_ROWS}")
    if not classes:
        return
    counts = {str(c): 0 for c in classes}
    for label in labels:
        if str(label) in counts:
            counts[str(label)] += 1
    thin = {c: n for c, n in counts.items() if n < MIN_PER_CLASS}
    if thin:
        shown = dict(list(thin.items())[:10])
        more = f" and {len(thin) - 10} more" if len(thin) > 10 else ""
        raise InsufficientData(f"{len(thin)} classes with fewer than {MIN_PER_CLASS} rows: {shown}{more}")


def validation_split(
    labels: Sequence[Any], params: TrainingParams, regression: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (fit, validation) of the split ``train`` uses (stratified by class): the same rows every time."""
    y = np.asarray(list(labels), dtype=object)
    idx = np.arange(len(y))
    fit, valid = train_test_split(
        idx,
        test_size=params.validation_fraction,
        random_state=params.seed,
        stratify=None if regression else y.astype(str),
    )
    return np.asarray(fit), np.asarray(valid)


def train(
    columns: Mapping[str, Sequence[Any]],
    schema: FeatureSchema,
    params: TrainingParams,
    sample_weight: Sequence[float] | None = None,
    estimator: UserModel | None = None,
) -> TrainedModel:
    """``sample_weight`` per row weighs label sources (a reviewer's label counts more than a user's).
    ``estimator``: a user's model to refit (a clone, with ``params.estimator_params``) instead of a recipe."""
    if schema.target not in columns:
        raise InvalidInput(f"target column {schema.target!r} not in data")
    missing = [name for name in schema.names if name not in columns]
    if missing:
        raise InvalidInput(f"feature columns missing from data: {missing}")
    labels = encode_targets(columns[schema.target], schema)
    unknown = sorted({str(v) for v in labels} - {str(c) for c in schema.classes})
    if unknown and not schema.regression:
        raise InvalidInput(f"labels not among the schema's classes {schema.classes}: {unknown[:10]}")
    check_trainable(labels, schema.classes)
    matrix = to_matrix(columns, schema)
    y = np.asarray(labels, dtype=object)
    train_idx, valid_idx = validation_split(labels, params, schema.regression)
    weights = None if sample_weight is None else np.asarray(sample_weight, dtype=float)[train_idx]
    pipeline: Any
    if estimator is None:
        pipeline = build_pipeline(schema, params)
        pipeline.fit(
            matrix[train_idx],
            _y_array(y[train_idx], schema),
            **({} if weights is None else {"model__sample_weight": weights}),
        )
    else:
        pipeline = refit_copy(estimator, params.estimator_params)
        pipeline.fit(matrix[train_idx], _y_array(y[train_idx], schema), sample_weight=weights)
    return trained_model(
        pipeline, schema, params, matrix[train_idx], list(y[train_idx]), matrix[valid_idx], list(y[valid_idx])
    )


def trained_model(
    pipeline: Any,
    schema: FeatureSchema,
    params: TrainingParams,
    reference: np.ndarray,
    reference_labels: list[str | int],
    validation: np.ndarray,
    validation_labels: list[str | int],
) -> TrainedModel:
    """A fitted model, its validation metrics and its bundle: the one ending of training and registration.
    Linear recipes carry what their exact explanations need; every other model is explained by occlusion."""
    bundle: dict[str, Any] = {"pipeline": pipeline, "baseline_row": _baseline_row(reference, schema)}
    if schema.regression:
        residuals = np.abs(np.asarray(validation_labels, dtype=float) - pipeline.predict(validation))
        bundle["interval"] = {"halfwidth": conformal_halfwidth(residuals), "coverage": INTERVAL_COVERAGE}
    metrics = evaluate(pipeline, validation, validation_labels, schema, bundle.get("interval"))
    if isinstance(pipeline, Pipeline) and hasattr(pipeline.named_steps.get("model"), "coef_"):
        bundle["background"] = pipeline.named_steps["prep"].transform(reference).mean(axis=0)
        bundle["feature_groups"] = feature_groups(pipeline, schema)
    expected = pipeline.predict(reference).astype(float) if schema.regression else pipeline.predict_proba(reference)
    compiled, not_compiled = compile_or_reason(pipeline, schema, bundle, reference, expected)
    return TrainedModel(
        bundle=bundle,
        schema=schema,
        params=params,
        metrics=metrics,
        reference_matrix=reference,
        reference_proba=expected,
        reference_labels=reference_labels,
        compiled=compiled,
        not_compiled=not_compiled,
    )


def conformal_halfwidth(residuals: np.ndarray, coverage: float = INTERVAL_COVERAGE) -> float:
    """Split-conformal: the ceil((n+1) * coverage)-th smallest absolute validation residual. A new row
    exchangeable with the validation rows falls within ``prediction ± halfwidth`` with probability at
    least ``coverage``."""
    r = np.sort(np.asarray(residuals, dtype=float)[np.isfinite(residuals)])
    if not len(r):
        return float("inf")
    rank = math.ceil((len(r) + 1) * coverage)
    return float(r[min(rank, len(r)) - 1])


def _y_array(y: np.ndarray, schema: FeatureSchema) -> np.ndarray:
    """Integer classes train as integers so predict returns JSON-friendly ints; regression targets as floats."""
    if schema.regression:
        return y.astype(np.float64)
    if all(isinstance(c, int) for c in schema.classes):
        return y.astype(np.int64)
    return y.astype(str)


def evaluate(
    pipeline: Any,
    matrix: np.ndarray,
    labels: Sequence[Any],
    schema: FeatureSchema,
    interval: Mapping[str, float] | None = None,
) -> ValidationMetrics | RegressionMetrics:
    """Accuracy, macro F1, ROC AUC (one-vs-rest when multi-class), log loss and calibration error; for
    regression RMSE, MAE, R² and the coverage of the prediction interval (``interval``, from the bundle)."""
    if schema.regression:
        return evaluate_regression(pipeline, matrix, labels, (interval or {}).get("halfwidth", float("inf")))
    y = _y_array(np.asarray(list(labels), dtype=object), schema)
    proba = pipeline.predict_proba(matrix)
    classes = list(pipeline.classes_)
    predicted = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
    y_list = list(y)
    roc: float | None
    try:
        if len(classes) == 2:
            roc = float(roc_auc_score(y, proba[:, 1]))
        else:
            roc = float(roc_auc_score(y, proba, multi_class="ovr", labels=classes))
    except ValueError:  # a class absent from the evaluation rows
        roc = None
    return ValidationMetrics(
        n=len(y_list),
        accuracy=float(accuracy_score(y, predicted.astype(y.dtype))),
        f1_macro=float(f1_score(y, predicted.astype(y.dtype), average="macro", labels=classes, zero_division=0)),
        roc_auc=roc,
        log_loss=float(log_loss(y, proba, labels=classes)),
        calibration_error=expected_calibration_error(proba, [classes.index(v) for v in y_list]),
    )


def evaluate_regression(
    pipeline: Any, matrix: np.ndarray, values: Sequence[Any], halfwidth: float
) -> RegressionMetrics:
    y = np.asarray(values, dtype=float)
    predicted = np.asarray(pipeline.predict(matrix), dtype=float)
    error = y - predicted
    spread = float(np.sum((y - y.mean()) ** 2)) if len(y) else 0.0
    return RegressionMetrics(
        n=len(y),
        rmse=float(np.sqrt(np.mean(error**2))) if len(y) else 0.0,
        mae=float(np.mean(np.abs(error))) if len(y) else 0.0,
        r2=1.0 - float(np.sum(error**2)) / spread if spread > 0 else None,
        interval_coverage=float(np.mean(np.abs(error) <= halfwidth)) if len(y) else 0.0,
        interval_halfwidth=halfwidth,
    )


def expected_calibration_error(proba: np.ndarray, true_index: Sequence[int], bins: int = 10) -> float:
    """Top-label ECE: confidence vs accuracy in equal-width confidence bins, weighted by bin size."""
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == np.asarray(true_index)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.mean() * abs(float(correct[mask].mean()) - float(confidence[mask].mean()))
    return float(total) if math.isfinite(total) else 0.0


def feature_groups(pipeline: Pipeline, schema: FeatureSchema) -> list[list[int]]:
    """For each schema feature, the transformed columns it became (one-hot columns grouped back)."""
    prep: ColumnTransformer = pipeline.named_steps["prep"]
    groups: list[list[int]] = [[] for _ in schema.features]
    offset = 0
    for name, transformer, cols in prep.transformers_:
        if name == "remainder" or transformer == "drop":
            continue
        if name == "numeric":
            for j in cols:
                groups[j].append(offset)
                offset += 1
        else:
            for j, cats in zip(cols, transformer.categories_, strict=True):
                groups[j].extend(range(offset, offset + len(cats)))
                offset += len(cats)
    return groups


def _baseline_row(matrix: np.ndarray, schema: FeatureSchema) -> np.ndarray:
    """Median / most frequent value per feature: the reference point for occlusion explanations."""
    row = np.empty(len(schema.features), dtype=object)
    for j, spec in enumerate(schema.features):
        column = matrix[:, j]
        if spec.kind is FeatureKind.numeric:
            values = column.astype(float)
            row[j] = float(np.nanmedian(values)) if np.isfinite(values).any() else 0.0
        else:
            names, counts = np.unique(column.astype(str), return_counts=True)
            row[j] = str(names[counts.argmax()])
    return row


def metadata_for(
    trained: TrainedModel, model: str, data: DataLineage, actor: str, parent_version: int | None = None
) -> ModelMetadata:
    """Everything the registry keeps about a trained model; version and hash are filled at registration."""
    from loopml.statistics.profile import build_profile

    profile = build_profile(
        trained.reference_matrix,
        trained.schema,
        proba=trained.reference_proba,
        labels=trained.reference_labels,
    )
    explainer: Literal["linear", "occlusion"] = "linear" if "feature_groups" in trained.bundle else "occlusion"
    return ModelMetadata(
        model=model,
        version=0,
        created_at=datetime.now(UTC),
        created_by=actor,
        library_versions=library_versions(),
        training_data=data,
        params=trained.params.model_dump(),
        metrics=trained.metrics.model_dump(),
        feature_schema=trained.schema,
        reference_profile=profile.model_dump(mode="json"),
        parent_version=parent_version,
        artifact_sha256="",
        artifact_key="",
        explainer=explainer,
        compiled=CompiledForm(parity=trained.compiled.parity) if trained.compiled else None,
        not_compiled=trained.not_compiled,
    )


def train_and_register(
    registry: ModelRegistry,
    columns: Mapping[str, Sequence[Any]],
    schema: FeatureSchema,
    params: TrainingParams,
    model: str,
    data: DataLineage,
    actor: str,
    parent_version: int | None = None,
) -> ModelMetadata:
    trained = train(columns, schema, params)
    return trained.register(registry, metadata_for(trained, model, data, actor, parent_version))
