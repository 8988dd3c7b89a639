"""Scoring and explanations for a loaded model bundle; pure computation, no AWS.

Explanations:
- linear models (logistic regression): exact contributions to the predicted class's log-odds,
  ``coef * (x - mean of the training data)`` in the transformed space, summed back per original
  feature (one-hot columns grouped). They add up to ``logit(x) - logit(training mean)``.
- regression: the same, on the predicted value (a linear model's terms add up to the value minus the
  value at the training mean; occlusion reports the change in the value).
- other models (the other recipes, any user's estimator): single-feature occlusion. Each feature in
  turn is set to its training median (numeric) or most frequent value (categorical) and the drop in
  the predicted class's probability is its contribution. One extra ``predict_proba`` call on
  ``n_features`` rows per explained instance.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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


class Predictor:
    def __init__(self, bundle: dict[str, Any], metadata: ModelMetadata) -> None:
        self.metadata = metadata
        self.pipeline = bundle["pipeline"]
        self.validator = RequestValidator(metadata.feature_schema)
        self.regression = metadata.feature_schema.regression
        self._halfwidth = float(bundle.get("interval", {}).get("halfwidth", 0.0))
        classes = [] if self.regression else self.pipeline.classes_
        self.classes: list[str | int] = [c.item() if hasattr(c, "item") else c for c in classes]
        self._class_keys = [str(c) for c in self.classes]
        self._baseline_row: np.ndarray = bundle["baseline_row"]
        self._names = metadata.feature_schema.names
        # Linear recipes carry their exact explanation's parts; any other model is explained by occlusion.
        self._coef: np.ndarray | None = None
        if "feature_groups" in bundle:
            self._background: np.ndarray = bundle["background"]
            self._groups: list[list[int]] = bundle["feature_groups"]
            self._coef = self.pipeline.named_steps["model"].coef_

    @property
    def explainer(self) -> str:
        return "linear" if self._coef is not None else "occlusion"

    def predict(
        self,
        rows: Sequence[Any],
        explain: bool = False,
        loc_prefix: Sequence[str | int] = ("body", "instances"),
        index_rows: bool = True,
    ) -> list[Prediction]:
        """Validate (raises InvalidInput naming each bad field at ``loc_prefix``), score, optionally explain."""
        matrix, flags = self.validator.validate(rows, loc_prefix, index_rows)
        return self.predict_matrix(matrix, flags, explain)

    def predict_matrix(self, matrix: np.ndarray, flags: list[RowFlags], explain: bool = False) -> list[Prediction]:
        if self.regression:
            return self._predict_values(matrix, flags, explain)
        proba = self.pipeline.predict_proba(matrix)
        _refuse_unscorable(proba)
        top = proba.argmax(axis=1)
        keys = self._class_keys
        explanations = self._explain(matrix, top) if explain else [None] * len(flags)
        return [
            Prediction(
                label=self.classes[k],
                probabilities=dict(zip(keys, row.tolist(), strict=True)),
                confidence=float(row[k]),
                flags=f,
                explanation=e,
            )
            for row, k, f, e in zip(proba, top, flags, explanations, strict=True)
        ]

    def _predict_values(self, matrix: np.ndarray, flags: list[RowFlags], explain: bool) -> list[Prediction]:
        values = np.asarray(self.pipeline.predict(matrix), dtype=float)
        _refuse_unscorable(values)
        half = self._halfwidth
        explanations = self._explain(matrix, np.zeros(len(values), dtype=int)) if explain else [None] * len(flags)
        return [
            Prediction(
                label=v,
                probabilities={},
                confidence=None,
                flags=f,
                explanation=e,
                interval=[v - half, v + half],
            )
            for v, f, e in zip(values.tolist(), flags, explanations, strict=True)
        ]

    def _explain(self, matrix: np.ndarray, top: np.ndarray) -> list[dict[str, float] | None]:
        if self._coef is not None:
            return self._explain_linear(matrix, top)
        return [self._explain_occlusion(matrix[i], int(top[i])) for i in range(len(matrix))]

    def _explain_linear(self, matrix: np.ndarray, top: np.ndarray) -> list[dict[str, float] | None]:
        assert self._coef is not None
        transformed = self.pipeline.named_steps["prep"].transform(matrix) - self._background
        out: list[dict[str, float] | None] = []
        for i, k in enumerate(top):
            # regression: coef_ is 1-D, the value's own weights; binary: coef_ is class 1's log-odds and class
            # 0's are its negative
            if self._coef.ndim == 1:
                weights = self._coef
            elif self._coef.shape[0] == 1:
                weights = self._coef[0] if k == 1 else -self._coef[0]
            else:
                weights = self._coef[k]
            terms = transformed[i] * weights
            out.append(
                {name: round(float(terms[cols].sum()), 6) for name, cols in zip(self._names, self._groups, strict=True)}
            )
        return out

    def _explain_occlusion(self, row: np.ndarray, k: int) -> dict[str, float]:
        n = len(self._names)
        variants = np.repeat(row[None, :], n + 1, axis=0)
        for j in range(n):
            variants[j + 1, j] = self._baseline_row[j]
        score = (
            np.asarray(self.pipeline.predict(variants), dtype=float)
            if self.regression
            else self.pipeline.predict_proba(variants)[:, k]
        )
        return {name: round(float(score[0] - score[j + 1]), 6) for j, name in enumerate(self._names)}


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
