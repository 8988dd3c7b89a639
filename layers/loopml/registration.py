"""Registering a user's fitted estimator: checked, profiled, measured and versioned as ``loopml train`` does.

``prepare`` is pure: the estimator and the data as columns in, a ``TrainedModel`` out, or one
``InvalidInput`` naming what is wrong (an unfitted estimator, something that is not a scikit-learn
classifier or regressor, columns it does not take, predictions that are not of the target's type, a
by-position rewrite that predicts differently). ``publish`` writes the data and the version through
the object-store port.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, is_classifier, is_regressor
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from loopml import keys
from loopml.data import sha256_hex, write_csv
from loopml.errors import InvalidInput
from loopml.registry import DataLineage, ModelMetadata, ModelRegistry
from loopml.schema import (
    MAX_CLASSES,
    FeatureKind,
    FeatureSchema,
    SchemaConfig,
    Task,
    encode_targets,
    infer_schema,
    infer_task,
    to_matrix,
)
from loopml.store import ObjectStore
from loopml.training import TrainedModel, TrainingParams, check_trainable, metadata_for, trained_model, validation_split
from loopml.user_model import UserModel, by_position, describe

MAX_REWRITE_DIFFERENCE = 1e-6  # by position vs on the DataFrame: float rounding only (relative, for values)


def check_estimator(estimator: Any) -> Task:
    """A fitted scikit-learn regressor, or classifier with ``predict_proba``: its task, or one line saying
    which it is not."""
    if not isinstance(estimator, BaseEstimator):
        raise InvalidInput(f"not a scikit-learn estimator: got {type(estimator).__module__}.{type(estimator).__name__}")
    try:
        check_is_fitted(estimator)
    except NotFittedError:
        raise InvalidInput(f"{describe(estimator)} is not fitted: call fit(X, y) before registering it") from None
    if is_regressor(estimator):
        return "regression"
    if not is_classifier(estimator):
        raise InvalidInput(f"{describe(estimator)} is neither a classifier nor a regressor")
    if not hasattr(estimator, "predict_proba"):
        raise InvalidInput(
            f"{describe(estimator)} has no predict_proba: loopml serves classifiers with probabilities "
            "(for an SVC, fit it with probability=True; or wrap it in CalibratedClassifierCV)"
        )
    return "classification"


def _check_task(estimator: Any, task: Task, values: Sequence[Any], target: str) -> None:
    """The estimator's predictions must be of the target's type: numbers for a regressor, few labels for a
    classifier."""
    try:
        infer_task(values, target, task)
    except InvalidInput:
        if task == "regression":
            raise InvalidInput(
                f"{describe(estimator)} is a regressor but the target {target!r} is not numeric: "
                "predictions do not match the target's values"
            ) from None
        raise InvalidInput(
            f"{describe(estimator)} is a classifier but the target {target!r} is continuous (over "
            f"{MAX_CLASSES} distinct numbers): predictions do not match the target's values"
        ) from None


def taken_columns(estimator: Any, columns: Mapping[str, Sequence[Any]], target: str) -> tuple[list[str], bool]:
    """The data's columns the estimator takes, in its order, and whether it selects them by name."""
    if target not in columns:
        raise InvalidInput(f"target column {target!r} not found; columns are {sorted(columns)}")
    features = [name for name in columns if name != target]
    names = getattr(estimator, "feature_names_in_", None)
    if names is not None:
        wanted = [str(n) for n in names]
        if target in wanted:
            raise InvalidInput(f"{describe(estimator)} takes the target column {target!r} as a feature")
        missing = [n for n in wanted if n not in columns]
        if missing:
            raise InvalidInput(f"{describe(estimator)} takes columns the data does not have: {missing}")
        return wanted, True
    taken = getattr(estimator, "n_features_in_", None)
    if taken is not None and taken != len(features):
        raise InvalidInput(
            f"{describe(estimator)} takes {taken} columns; the data has {len(features)} besides the target "
            f"{target!r}: {features}"
        )
    return features, False


def _check_classes(model: UserModel, schema: FeatureSchema) -> None:
    if schema.regression:
        return
    predicted = {str(c) for c in model.classes_}
    labels = {str(c) for c in schema.classes}
    if not labels <= predicted:
        raise InvalidInput(
            f"the estimator predicts classes {sorted(predicted)[:10]} but the target {schema.target!r} has "
            f"{sorted(labels - predicted)[:10]} besides: predictions do not match the target's values"
        )


def _check_against_frame(
    original: Any, model: UserModel, matrix: np.ndarray, got: np.ndarray, schema: FeatureSchema
) -> None:
    """The by-position rewrite (which scored ``matrix`` as ``got``) must predict what the estimator predicts
    on a DataFrame of the same rows."""
    try:
        import pandas as pd
    except ImportError:  # where pandas is missing nobody could have fitted on a DataFrame here: nothing to compare
        return
    frame = pd.DataFrame(model.values(matrix), columns=schema.names)
    for spec in schema.features:
        if spec.kind is FeatureKind.numeric:
            frame[spec.name] = frame[spec.name].astype(float)
    if schema.regression:
        expected = np.asarray(original.predict(frame), dtype=float)
        scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    else:
        expected, scale = np.asarray(original.predict_proba(frame), dtype=float), 1.0
    drift = float(np.max(np.abs(expected - got))) / scale if expected.size else 0.0
    if not math.isfinite(drift) or drift > MAX_REWRITE_DIFFERENCE:
        raise InvalidInput(
            f"{describe(original)} selects its columns in a way loopml cannot serve without pandas: by "
            f"position it predicts differently (max relative difference {drift:.3g}); select columns by name in one "
            "ColumnTransformer as the pipeline's first step"
        )


def _check_scores(model: UserModel, matrix: np.ndarray, estimator: Any, schema: FeatureSchema) -> np.ndarray:
    """The model's scores of the data's rows (values, or probabilities), refused unless one finite per row."""
    try:
        scores = model.predict(matrix) if schema.regression else model.predict_proba(matrix)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidInput(f"{describe(estimator)} does not accept the data's columns as they are: {first}") from None
    shape = (len(matrix),) if schema.regression else (len(matrix), len(model.classes_))
    if scores.shape != shape or not np.isfinite(scores).all():
        what = "value" if schema.regression else "probability per class"
        raise InvalidInput(f"{describe(estimator)} gives no finite {what} for some of the data's rows")
    return np.asarray(scores)


def prepare(
    estimator: Any,
    columns: Mapping[str, Sequence[Any]],
    target: str,
    config: SchemaConfig | None = None,
    holdout: Mapping[str, Sequence[Any]] | None = None,
    params: TrainingParams | None = None,
) -> TrainedModel:
    """The user's estimator as loopml serves it, with its schema, reference profile data and metrics.

    Metrics come from ``holdout`` when given; otherwise from the validation split ``loopml train`` uses
    (optimistic when the estimator was fitted on those rows).
    """
    task = check_estimator(estimator)
    names, by_name = taken_columns(estimator, columns, target)
    _check_task(estimator, task, columns[target], target)
    config = config or SchemaConfig()
    dropped = [n for n in names if n in config.drop]
    if dropped:
        raise InvalidInput(f"the config drops columns the estimator takes: {dropped}")
    extra = [n for n in columns if n != target and n not in names]
    schema = infer_schema({**{n: columns[n] for n in names}, target: columns[target]}, target, config, task)
    wrapped = UserModel(
        by_position(estimator) if by_name else estimator, tuple(schema.indices(FeatureKind.categorical))
    )
    _check_classes(wrapped, schema)
    matrix = to_matrix(columns, schema)
    labels = encode_targets(columns[target], schema)
    check_trainable(labels, schema.classes)
    scores = _check_scores(wrapped, matrix, estimator, schema)
    if by_name:
        _check_against_frame(estimator, wrapped, matrix, scores, schema)
    params = (params or TrainingParams()).model_copy(
        update={"model_type": "user_estimator", "estimator": describe(estimator)}
    )
    if holdout is not None:
        missing = [n for n in [*names, target] if n not in holdout]
        if missing:
            raise InvalidInput(f"the holdout lacks columns: {missing}")
        valid_matrix, valid_labels = to_matrix(holdout, schema), encode_targets(holdout[target], schema)
        unknown = sorted({str(v) for v in valid_labels} - {str(c) for c in schema.classes})
        if unknown and not schema.regression:
            raise InvalidInput(f"holdout labels not among the data's classes {schema.classes}: {unknown[:10]}")
    else:
        _, valid = validation_split(labels, params, schema.regression)
        valid_matrix, valid_labels = matrix[valid], [labels[i] for i in valid]
    trained = trained_model(wrapped, schema, params, matrix, labels, valid_matrix, valid_labels)
    trained.notes = [f"not features (the estimator does not take them): {extra}"] if extra else []
    return trained


def publish(
    store: ObjectStore,
    trained: TrainedModel,
    model: str,
    data: bytes,
    data_name: str,
    actor: str,
    new_contract: bool = False,
    parent_version: int | None = None,
) -> ModelMetadata:
    """Keep the data beside the model (retraining starts from it) and register an immutable version."""
    digest = sha256_hex(data)
    key = keys.dataset_key(model, "uploads", f"{digest[:16]}-{data_name}")
    store.put(key, data)
    lineage = DataLineage(uri=store.uri(key), sha256=digest, rows=len(trained.reference_labels))
    meta = metadata_for(trained, model, lineage, actor, parent_version)
    return trained.register(ModelRegistry(store), meta, new_contract)


def columns_of(x: Any, y: Any = None, target: str | None = None) -> tuple[dict[str, list[Any]], str]:
    """A DataFrame, a mapping of columns or a 2-D array (columns ``x0, x1, ...``), and the labels, as the
    columns loopml reads from a file; the target is named by ``target``, ``y.name`` or ``"target"``."""
    if hasattr(x, "columns") and hasattr(x, "to_dict"):
        columns = {str(c): [None if _is_nan(v) else v for v in x[c].tolist()] for c in x.columns}
    elif isinstance(x, Mapping):
        columns = {str(k): list(v) for k, v in x.items()}
    else:
        array = np.asarray(x, dtype=object)
        if array.ndim != 2:
            raise InvalidInput(f"X must be a DataFrame, a mapping of columns or a 2-D array; got {array.ndim}-D")
        columns = {f"x{j}": array[:, j].tolist() for j in range(array.shape[1])}
    name = target or (str(y.name) if getattr(y, "name", None) is not None else "target")
    if y is not None:
        labels = y.tolist() if hasattr(y, "tolist") else list(y)
        rows = len(next(iter(columns.values()), []))
        if len(labels) != rows:
            raise InvalidInput(f"y has {len(labels)} values for {rows} rows of X")
        columns[name] = labels
    return columns, name


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def as_csv(columns: Mapping[str, Sequence[Any]]) -> bytes:
    return write_csv({k: list(v) for k, v in columns.items()})


def destination(to: str | Path | ObjectStore) -> ObjectStore:
    """``s3://bucket``, a folder, or an object store as it is."""
    if not isinstance(to, str | Path):
        return to
    text = str(to)
    if text.startswith("s3://"):
        import boto3

        from loopml.adapters.s3 import S3ObjectStore

        bucket = text.removeprefix("s3://").strip("/")
        if not bucket or "/" in bucket:
            raise InvalidInput(f"to={text!r}: give the models bucket itself, s3://BUCKET")
        return S3ObjectStore(boto3.client("s3"), bucket)
    from loopml.adapters.folder import FolderObjectStore

    return FolderObjectStore(text)


def register(
    estimator: Any,
    x: Any,
    y: Any = None,
    *,
    model: str,
    to: str | Path | ObjectStore,
    target: str | None = None,
    holdout: tuple[Any, Any] | None = None,
    champion: bool = False,
    new_schema: bool = False,
    actor: str = "loopml.register",
) -> ModelMetadata:
    """``loopml register`` from Python: ``x`` and ``y`` as the estimator was fitted (a DataFrame and a
    Series, a mapping of columns, or arrays), ``holdout`` as ``(x, y)`` rows it was not fitted on."""
    from loopml.names import validate_model_name

    validate_model_name(model)
    columns, name = columns_of(x, y, target)
    held = columns_of(holdout[0], holdout[1], name)[0] if holdout is not None else None
    trained = prepare(estimator, columns, name, holdout=held)
    store = destination(to)
    meta = publish(store, trained, model, as_csv(columns), "register.csv", actor, new_schema)
    if champion:
        ModelRegistry(store).set_alias(model, "champion", meta.version, actor=actor, reason="loopml.register")
    return meta
