"""Compiling a fitted model to ONNX at registration, and proving the compiled form scores as it does.

``compile_model`` runs wherever a version is registered (``loopml train``, ``loopml register``, the
retraining workflow). It converts with skl2onnx, embeds what serving needs (``loopml.compiled``), scores
the reference rows through the very code the inference function runs, and compares with scikit-learn:
the same predicted class on every row, and probabilities (or values, relative to their scale) within the
model family's tolerance. A model that does not convert, or converts but disagrees, raises
``NotCompilable`` naming why; the scikit-learn runtime still serves it.

Tolerances (``TOLERANCES``), from what float32 arithmetic can move:
- ``linear``: 1e-5. The graph computes the same dot product in float32 (measured: 2e-7).
- ``trees``: 1e-3. Thresholds are float32 in ONNX; a value between a float64 threshold and its float32
  rounding takes the other branch (FACTS.md measured 1.3e-3 on a whole float32 pipeline; recipes feed
  the float64 preprocessing, and stay near 1e-6).
- ``other``: 1e-4.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from loopml.compiled import SPEC_KEY, ColumnInput, CompiledModel, CompiledSpec, Linear, Prep
from loopml.errors import LoopmlError
from loopml.registry import Parity
from loopml.schema import CATEGORY_MISSING, FeatureKind, FeatureSchema
from loopml.user_model import UserModel, describe, input_transformer

TOLERANCES = {"linear": 1e-5, "trees": 1e-3, "other": 1e-4}
_TREES = ("HistGradientBoosting", "RandomForest", "ExtraTrees", "GradientBoosting", "DecisionTree")
_TIE = 1e-9  # rows whose top two classes scikit-learn scores this close may take either label


class NotCompilable(LoopmlError):
    """The model has no compiled form: the converter refused it, or the compiled form scores differently."""


@dataclass(frozen=True)
class Compiled:
    onnx: bytes
    parity: Parity


MAX_PARITY_ROWS = 10_000  # reference rows scored both ways at registration


def compile_or_reason(
    model: Any, schema: FeatureSchema, bundle: dict[str, Any], reference: np.ndarray, expected: np.ndarray
) -> tuple[Compiled | None, str | None]:
    """The compiled form, or None and why there is none (the scikit-learn runtime serves such a model)."""
    try:
        return compile_model(model, schema, bundle, reference[:MAX_PARITY_ROWS], expected[:MAX_PARITY_ROWS]), None
    except NotCompilable as exc:
        return None, str(exc)


def family(estimator: Any) -> str:
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    if hasattr(final, "coef_"):
        return "linear"
    if any(type(final).__name__.startswith(t) for t in _TREES):
        return "trees"
    return "other"


def compile_model(
    model: Any, schema: FeatureSchema, bundle: dict[str, Any], reference: np.ndarray, expected: np.ndarray
) -> Compiled:
    """``model`` (a recipe's Pipeline or a ``UserModel``) as ONNX, verified on ``reference`` rows against
    ``expected`` (scikit-learn's probabilities, or values)."""
    if importlib.util.find_spec("skl2onnx") is None:  # present where models are registered
        raise NotCompilable("skl2onnx is not installed here")
    estimator = model.estimator if isinstance(model, UserModel) else model
    base = _spec_base(model, schema, bundle)
    try:
        if isinstance(model, UserModel):
            graph, spec = _convert_user(model, schema, base)
        else:
            graph, spec = _convert_recipe(model, base, bundle)
    except NotCompilable:
        raise
    except Exception as exc:  # skl2onnx raises many types for what it cannot convert
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise NotCompilable(f"{describe(estimator)} does not convert to ONNX: {type(exc).__name__}: {first}") from None
    data = _with_spec(graph, spec)
    which = family(estimator)
    try:
        parity = measure_parity(data, reference, expected, schema, which)
    except Exception as exc:  # a graph onnxruntime refuses or cannot run on these inputs
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise NotCompilable(f"{describe(estimator)}: the compiled form does not run: {first}") from None
    if parity.label_mismatches or not parity.max_abs_diff <= parity.tolerance:
        raise NotCompilable(
            f"{describe(estimator)}: the compiled form scores differently on the {parity.rows} reference rows "
            f"(max difference {parity.max_abs_diff:.3g}, tolerance {parity.tolerance:g} for {which}; "
            f"{parity.label_mismatches} rows with another label)"
        )
    return Compiled(data, parity)


def measure_parity(
    data: bytes, reference: np.ndarray, expected: np.ndarray, schema: FeatureSchema, which: str
) -> Parity:
    compiled = CompiledModel(data, hashlib.sha256(data).hexdigest(), "the compiled form")
    got = compiled.scores(reference)
    expected = np.asarray(expected, dtype=np.float64)
    mismatches = 0
    if schema.regression:
        scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
        diff = float(np.max(np.abs(got - expected))) / scale if expected.size else 0.0
    else:
        diff = float(np.max(np.abs(got - expected))) if expected.size else 0.0
        ours, theirs = got.argmax(axis=1), expected.argmax(axis=1)
        rows = np.arange(len(expected))
        gap = expected[rows, theirs] - expected[rows, ours]
        mismatches = int(np.sum((ours != theirs) & (gap > _TIE)))
    return Parity(
        family=which,
        rows=len(reference),
        max_abs_diff=diff if math.isfinite(diff) else float("inf"),
        tolerance=TOLERANCES[which],
        label_mismatches=mismatches,
    )


def _spec_base(model: Any, schema: FeatureSchema, bundle: dict[str, Any]) -> dict[str, Any]:
    classes = [] if schema.regression else [c.item() if hasattr(c, "item") else c for c in model.classes_]
    baseline = [float(v) if isinstance(v, int | float | np.floating) else str(v) for v in bundle["baseline_row"]]
    return {
        "task": schema.task,
        "classes": classes,
        "baseline_row": baseline,
        "halfwidth": float(bundle.get("interval", {}).get("halfwidth", 0.0)),
    }


def _finite(name: str, values: Any) -> list[float]:
    out = [float(v) for v in np.asarray(values, dtype=float).ravel()]
    if not all(math.isfinite(v) for v in out):
        raise NotCompilable(f"the exported {name} are not all finite (a column with no values?)")
    return out


def _export_prep(prep: Any) -> Prep:
    """The recipe's ColumnTransformer (``training.build_pipeline``) as statistics; anything else refused."""
    numeric: list[int] = []
    medians: list[float] = []
    means: list[float] = []
    scales: list[float] = []
    categorical: list[int] = []
    categories: list[list[str]] = []
    for name, step, cols in prep.transformers_:
        if name == "remainder":
            if step != "drop" and len(cols):
                raise NotCompilable("the preprocessing passes columns through")
            continue
        if name == "numeric":
            impute, scale = step.named_steps["impute"], step.named_steps["scale"]
            numeric = [int(c) for c in cols]
            medians = _finite("medians", impute.statistics_)
            means = _finite("means", scale.mean_)
            scales = _finite("scales", scale.scale_)
            if len(medians) != len(numeric):
                raise NotCompilable("the imputer dropped a column that had no values")
        elif name == "categorical":
            categorical = [int(c) for c in cols]
            categories = [[str(v) for v in cats] for cats in step.categories_]
        else:
            raise NotCompilable(f"unknown preprocessing step {name!r}")
    return Prep(
        numeric=numeric, medians=medians, means=means, scales=scales, categorical=categorical, categories=categories
    )


def _options(final: Any) -> dict[int, dict[str, Any]]:
    return {id(final): {"zipmap": False}} if hasattr(final, "predict_proba") else {}


def _convert_recipe(pipeline: Any, spec: dict[str, Any], bundle: dict[str, Any]) -> tuple[Any, CompiledSpec]:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    prep = _export_prep(pipeline.named_steps["prep"])
    final = pipeline.named_steps["model"]
    graph = to_onnx(final, initial_types=[("X", FloatTensorType([None, prep.width]))], options=_options(final))
    linear = None
    if "feature_groups" in bundle:  # what training exported for exact explanations (``training.trained_model``)
        linear = Linear(
            coef=[_finite("coefficients", row) for row in np.atleast_2d(np.asarray(final.coef_, dtype=float))],
            background=_finite("background", bundle["background"]),
            groups=[[int(i) for i in g] for g in bundle["feature_groups"]],
        )
    return graph, CompiledSpec(
        **spec, inputs="transformed", prep=prep, output=_output(graph, spec["task"]), linear=linear
    )


def _convert_user(model: UserModel, schema: FeatureSchema, spec: dict[str, Any]) -> tuple[Any, CompiledSpec]:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    estimator = copy.deepcopy(model.estimator)
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    if not model.categorical:
        types = [("X", FloatTensorType([None, len(schema.features)]))]
        graph = to_onnx(estimator, initial_types=types, options=_options(final))
        return graph, CompiledSpec(**spec, inputs="matrix", output=_output(graph, spec["task"]))
    columns = input_transformer(estimator)
    if not hasattr(columns, "transformers_"):
        raise NotCompilable(
            f"{describe(model.estimator)} takes numbers and categories without a ColumnTransformer first: "
            "the compiled form needs one typed input per column"
        )
    _string_missing(estimator)
    names = schema.names
    columns.transformers_ = [
        (name, step, [names[int(i)] for i in cols] if len(cols) and not isinstance(cols[0], str) else cols)
        for name, step, cols in columns.transformers_
    ]
    inputs = [
        ColumnInput(name=f.name, kind="numeric" if f.kind is FeatureKind.numeric else "categorical")
        for f in schema.features
    ]
    types = [
        (c.name, FloatTensorType([None, 1]) if c.kind == "numeric" else StringTensorType([None, 1])) for c in inputs
    ]
    graph = to_onnx(estimator, initial_types=types, options=_options(final))
    return graph, CompiledSpec(**spec, inputs="columns", columns=inputs, output=_output(graph, spec["task"]))


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _string_missing(estimator: Any) -> None:
    """A missing category is NaN to the user's steps (``UserModel.values``), but a string tensor holds no
    NaN: the compiled form is fed ``CATEGORY_MISSING`` there. So categorical imputers fitted on NaN look for
    ``CATEGORY_MISSING`` (their fill values unchanged), and encoders that learned NaN as a category
    (scikit-learn does, when training data had missing values) know it by that name."""
    from sklearn.impute import SimpleImputer

    pending = [estimator]
    while pending:
        step = pending.pop()
        if isinstance(step, SimpleImputer):
            fills = np.asarray(getattr(step, "statistics_", []))
            if fills.dtype == object and _is_nan(step.missing_values):
                step.missing_values = CATEGORY_MISSING
        categories = getattr(step, "categories_", None)
        if isinstance(categories, list):
            step.categories_ = [
                np.asarray([CATEGORY_MISSING if _is_nan(c) else c for c in cats], dtype=object)
                if cats.dtype == object
                else cats
                for cats in categories
            ]
        pending += [s for _, s in getattr(step, "steps", [])]
        pending += [s for _, s, _ in getattr(step, "transformers_", []) if not isinstance(s, str)]


def _output(graph: Any, task: str) -> str:
    outputs = [o.name for o in graph.graph.output]
    return outputs[0] if task == "regression" else outputs[-1]


# Tree-ensemble attributes skl2onnx writes with their default value on every node: hit rates (1.0, which
# inference never reads) and missing-value tracking (0). Without them a forest's file is a fifth smaller and
# onnxruntime builds its session 15% faster, on every cold start.
_DEFAULT_TREE_ATTRIBUTES = {"nodes_hitrates": 1.0, "nodes_missing_value_tracks_true": 0}


def _drop_default_tree_attributes(graph: Any) -> None:
    for node in graph.graph.node:
        if node.domain != "ai.onnx.ml" or not node.op_type.startswith("TreeEnsemble"):
            continue
        kept = [
            a
            for a in node.attribute
            if a.name not in _DEFAULT_TREE_ATTRIBUTES
            or any(v != _DEFAULT_TREE_ATTRIBUTES[a.name] for v in (a.floats or a.ints))
        ]
        del node.attribute[:]
        node.attribute.extend(kept)


def _with_spec(graph: Any, spec: CompiledSpec) -> bytes:
    """The file registered: its parity is measured on exactly these bytes."""
    from onnx import helper

    _drop_default_tree_attributes(graph)
    helper.set_model_props(graph, {SPEC_KEY: spec.model_dump_json()})
    return bytes(graph.SerializeToString())
