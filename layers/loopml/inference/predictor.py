"""Scoring and explanations for a loaded model bundle; pure computation, no AWS.

Explanations:
- linear models (logistic regression): exact contributions to the predicted class's log-odds,
  ``coef * (x - mean of the training data)`` in the transformed space, summed back per original
  feature (one-hot columns grouped). They add up to ``logit(x) - logit(training mean)``.
- regression: the same, on the predicted value (a linear model's terms add up to the value minus the
  value at the training mean; occlusion reports the change in the value).
- other models (the other recipes, any user's estimator): single-feature occlusion. Each feature in
  turn is set to its training median (numeric) or most frequent value (categorical) and the drop in
  the predicted class's probability is its contribution. One extra scoring call for the whole batch,
  on ``n_features + 1`` rows per explained instance.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from loopml.errors import InvalidInput
from loopml.registry import ModelMetadata
from loopml.schema import RequestValidator, RowFlags


class Prediction:
    """One scored row: a class with its probabilities, or (regression) a value with its interval. A plain
    class with slots: it is built per row on the hot path."""

    __slots__ = ("confidence", "explanation", "flags", "interval", "label", "probabilities")

    def __init__(
        self,
        label: str | int | float,
        probabilities: dict[str, float],
        confidence: float | None,
        flags: RowFlags,
        explanation: dict[str, float] | None,
        interval: list[float] | None = None,
    ) -> None:
        self.label = label
        self.probabilities = probabilities
        self.confidence = confidence
        self.flags = flags
        self.explanation = explanation
        self.interval = interval


class Scored:
    """A batch's predictions field by field, one list entry per row (``Prediction``'s fields): built by a few
    comprehensions rather than an object per row."""

    __slots__ = ("confidences", "explanations", "flags", "intervals", "labels", "probabilities")

    def __init__(
        self,
        labels: list[Any],
        probabilities: list[dict[str, float]],
        confidences: list[float | None],
        intervals: list[list[float] | None],
        flags: list[RowFlags],
        explanations: list[dict[str, float] | None],
    ) -> None:
        self.labels = labels
        self.probabilities = probabilities
        self.confidences = confidences
        self.intervals = intervals
        self.flags = flags
        self.explanations = explanations

    def predictions(self) -> list[Prediction]:
        return [
            Prediction(label, probabilities, confidence, flags, explanation, interval)
            for label, probabilities, confidence, interval, flags, explanation in zip(
                self.labels,
                self.probabilities,
                self.confidences,
                self.intervals,
                self.flags,
                self.explanations,
                strict=True,
            )
        ]


class Scorer(Protocol):
    """What the predictor needs of a model, whichever runtime scores it: ``SklearnScorer`` (an unpickled
    bundle) or ``loopml.compiled.CompiledModel`` (onnxruntime, no scikit-learn)."""

    classes: list[str | int]
    baseline_row: np.ndarray
    halfwidth: float
    coef: np.ndarray | None  # linear recipes: their exact explanation's parts
    background: np.ndarray | None
    groups: list[list[int]]

    def scores(self, matrix: np.ndarray) -> np.ndarray: ...

    def transform(self, matrix: np.ndarray) -> np.ndarray: ...


class SklearnScorer:
    """A loaded bundle (``training.trained_model``) behind the ``Scorer`` interface."""

    def __init__(self, bundle: dict[str, Any], regression: bool) -> None:
        self.pipeline = bundle["pipeline"]
        self.regression = regression
        classes = [] if regression else self.pipeline.classes_
        self.classes = [c.item() if hasattr(c, "item") else c for c in classes]
        self.baseline_row = bundle["baseline_row"]
        self.halfwidth = float(bundle.get("interval", {}).get("halfwidth", 0.0))
        self.coef = self.background = None
        self.groups = []
        if "feature_groups" in bundle:
            self.background, self.groups = bundle["background"], bundle["feature_groups"]
            self.coef = self.pipeline.named_steps["model"].coef_

    def scores(self, matrix: np.ndarray) -> np.ndarray:
        if self.regression:
            return np.asarray(self.pipeline.predict(matrix), dtype=float)
        return np.asarray(self.pipeline.predict_proba(matrix))

    def transform(self, matrix: np.ndarray) -> np.ndarray:
        return np.asarray(self.pipeline.named_steps["prep"].transform(matrix))


class Predictor:
    def __init__(self, model: dict[str, Any] | Scorer, metadata: ModelMetadata) -> None:
        """``model``: a loaded bundle (the scikit-learn runtime) or any ``Scorer``."""
        self.metadata = metadata
        self.regression = metadata.feature_schema.regression
        self.scorer: Scorer = SklearnScorer(model, self.regression) if isinstance(model, dict) else model
        self.validator = RequestValidator(metadata.feature_schema)
        self.classes = self.scorer.classes
        self._class_keys = [str(c) for c in self.classes]
        self._names = metadata.feature_schema.names

    @property
    def explainer(self) -> str:
        return "linear" if self.scorer.coef is not None else "occlusion"

    def predict(
        self,
        rows: Sequence[Any],
        explain: bool = False,
        loc_prefix: Sequence[str | int] = ("body", "instances"),
        index_rows: bool = True,
    ) -> list[Prediction]:
        """Validate (raises InvalidInput naming each bad field at ``loc_prefix``), score, optionally explain."""
        return self.score(rows, explain, loc_prefix, index_rows).predictions()

    def score(
        self,
        rows: Sequence[Any],
        explain: bool = False,
        loc_prefix: Sequence[str | int] = ("body", "instances"),
        index_rows: bool = True,
    ) -> Scored:
        """``predict``, field by field: what /predict encodes."""
        matrix, flags = self.validator.validate(rows, loc_prefix, index_rows)
        return self.score_matrix(matrix, flags, explain)

    def predict_matrix(self, matrix: np.ndarray, flags: list[RowFlags], explain: bool = False) -> list[Prediction]:
        return self.score_matrix(matrix, flags, explain).predictions()

    def score_matrix(self, matrix: np.ndarray, flags: list[RowFlags], explain: bool = False) -> Scored:
        # plain lists (one tolist() each) built by comprehensions: this runs for every row of every request
        scores = self.scorer.scores(matrix)
        _refuse_unscorable(scores)
        n = len(flags)
        explanations: list[dict[str, float] | None] = [None] * n
        if self.regression:
            values = scores.tolist()
            half = self.scorer.halfwidth
            if explain:
                explanations = self._explain(matrix, np.zeros(n, dtype=int))
            return Scored(
                values, [{} for _ in values], [None] * n, [[v - half, v + half] for v in values], flags, explanations
            )
        top = scores.argmax(axis=1)
        rows, tops = scores.tolist(), top.tolist()
        keys, classes = self._class_keys, self.classes
        return Scored(
            [classes[k] for k in tops],
            [dict(zip(keys, row, strict=True)) for row in rows],
            [row[k] for row, k in zip(rows, tops, strict=True)],
            [None] * n,
            flags,
            self._explain(matrix, top) if explain else explanations,
        )

    def _explain(self, matrix: np.ndarray, top: np.ndarray) -> list[dict[str, float] | None]:
        if self.scorer.coef is not None:
            return self._explain_linear(matrix, top)
        return self._explain_occlusion(matrix, top)

    def _explain_linear(self, matrix: np.ndarray, top: np.ndarray) -> list[dict[str, float] | None]:
        coef = self.scorer.coef
        assert coef is not None
        transformed = self.scorer.transform(matrix) - self.scorer.background
        groups = self.scorer.groups
        out: list[dict[str, float] | None] = []
        for i, k in enumerate(top):
            # regression: coef_ is 1-D, the value's own weights; binary: coef_ is class 1's log-odds and class
            # 0's are its negative
            if coef.ndim == 1:
                weights = coef
            elif coef.shape[0] == 1:
                weights = coef[0] if k == 1 else -coef[0]
            else:
                weights = coef[k]
            terms = transformed[i] * weights
            out.append(
                {name: round(float(terms[cols].sum()), 6) for name, cols in zip(self._names, groups, strict=True)}
            )
        return out

    def _explain_occlusion(self, matrix: np.ndarray, top: np.ndarray) -> list[dict[str, float] | None]:
        """Every row's variants (itself, then each feature set to its baseline) scored in one call."""
        n = len(self._names)
        variants = np.repeat(matrix, n + 1, axis=0)
        for j in range(n):
            variants[j + 1 :: n + 1, j] = self.scorer.baseline_row[j]
        scores = self.scorer.scores(variants)
        out: list[dict[str, float] | None] = []
        for i, k in enumerate(top.tolist()):
            block = scores[i * (n + 1) : (i + 1) * (n + 1)]
            score = block if self.regression else block[:, k]
            out.append({name: round(float(score[0] - score[j + 1]), 6) for j, name in enumerate(self._names)})
        return out


def _refuse_unscorable(scores: np.ndarray) -> None:
    """One vectorised check: a row the model cannot score is refused, named."""
    finite = np.isfinite(scores)
    if finite.all():
        return
    bad = [int(i) for i in np.flatnonzero(~(finite.all(axis=1) if finite.ndim == 2 else finite))]
    raise InvalidInput(
        f"the model cannot score {len(bad)} row(s): their values overflow its arithmetic",
        [
            {"loc": ["body", "instances", i], "msg": "the model cannot score this row", "type": "unscorable"}
            for i in bad
        ],
    )
