"""Bring your own model: a user's fitted scikit-learn estimator, served, monitored and retrained like a recipe.

loopml feeds every model one object matrix: the schema's columns in order, numbers as floats, a missing
category as ``CATEGORY_MISSING``. ``UserModel`` hands the user's estimator the values as the user's own
data had them (a missing category is NaN, an all-numeric matrix is float64), so the rest of loopml (the
predictor, the gate, the canary's evidence, batch scoring, the reference profile) treats both alike.

Pipelines fitted on pandas DataFrames select their columns by name, and scikit-learn resolves names only
on a DataFrame. pandas stays out of the runtime (it costs every function's cold start): at registration
``by_position`` rewrites the ColumnTransformer that receives the input to select the same columns by
position, and ``register`` checks the rewrite against the estimator's own DataFrame predictions when
pandas is installed where the user registers. Serving, retraining and batch scoring then need no pandas.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone, is_classifier
from sklearn.utils.validation import has_fit_parameter

from loopml.errors import InvalidInput
from loopml.schema import CATEGORY_MISSING

# A DataFrame-fitted estimator given positions warns on every call; its columns were checked at registration.
_NAMELESS = r"X does not have valid feature names"


class UserModel(BaseEstimator):
    """The user's classifier or regressor behind loopml's matrix. ``clone`` gives the same estimator,
    unfitted, with the same hyper-parameters: retraining refits the user's model, never a recipe."""

    def __init__(self, estimator: Any = None, categorical: Sequence[int] = ()) -> None:
        self.estimator = estimator
        self.categorical = categorical

    @property
    def classes_(self) -> np.ndarray:
        return np.asarray(self.estimator.classes_)

    def values(self, matrix: Any) -> np.ndarray:
        """loopml's matrix as the user's data had it: a missing category NaN, all-numeric rows float64."""
        values = np.asarray(matrix, dtype=object)
        if not self.categorical:
            return values.astype(np.float64)
        values = values.copy()
        for j in self.categorical:
            column = values[:, j]
            column[column == CATEGORY_MISSING] = np.nan
        return values

    def fit(self, matrix: Any, y: Any, sample_weight: Any = None) -> UserModel:
        options = {}
        if sample_weight is not None:
            final = self.estimator.steps[-1] if hasattr(self.estimator, "steps") else None
            target = final[1] if final else self.estimator
            if has_fit_parameter(target, "sample_weight"):
                options = {f"{final[0]}__sample_weight" if final else "sample_weight": sample_weight}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_NAMELESS)
            self.estimator.fit(self.values(matrix), y, **options)
        return self

    def predict_proba(self, matrix: Any) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_NAMELESS)
            return np.asarray(self.estimator.predict_proba(self.values(matrix)))

    def predict(self, matrix: Any) -> np.ndarray:
        if is_classifier(self.estimator):
            return self.classes_[self.predict_proba(matrix).argmax(axis=1)]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_NAMELESS)
            return np.asarray(self.estimator.predict(self.values(matrix)), dtype=float).reshape(len(matrix))


def describe(estimator: Any) -> str:
    """``Pipeline(columntransformer, gradientboostingclassifier)`` style: what the history and CLI show."""
    steps = getattr(estimator, "steps", None)
    if steps:
        return f"{type(estimator).__name__}({', '.join(f'{n}={type(s).__name__}' for n, s in steps)})"
    return type(estimator).__name__


def refit_copy(model: UserModel, overrides: dict[str, Any]) -> UserModel:
    """The champion's estimator, unfitted, with the run's hyper-parameter overrides (``set_params`` keys)."""
    fresh = clone(model)
    if overrides:
        known = fresh.estimator.get_params(deep=True)
        unknown = sorted(set(overrides) - set(known))
        if unknown:
            raise InvalidInput(
                f"estimator_params: {describe(fresh.estimator)} has no parameter(s) {unknown}; "
                f"it has {sorted(k for k in known if '__' in k or not hasattr(known[k], 'get_params'))[:40]}"
            )
        fresh.estimator.set_params(**overrides)
    return fresh


def input_transformer(estimator: Any) -> Any:
    """The step that receives the raw input: the estimator itself, or a Pipeline's first step, nested."""
    while hasattr(estimator, "steps"):
        estimator = estimator.steps[0][1]
    return estimator


def by_position(estimator: Any) -> Any:
    """A copy of ``estimator`` whose input ColumnTransformer selects by position what it selected by name.

    Both the fitted selection (``transformers_``) and the declared one (``transformers``, which ``clone``
    copies for a refit) are rewritten, so a retrained copy also selects by position.
    """
    rewritten = copy.deepcopy(estimator)
    columns = input_transformer(rewritten)
    if not hasattr(columns, "transformers_"):
        return rewritten
    positions = {name: [int(i) for i in idx] for name, idx in columns._transformer_to_input_indices.items()}
    columns.transformers_ = [(name, step, positions.get(name, cols)) for name, step, cols in columns.transformers_]
    columns.transformers = [(name, step, positions[name]) for name, step, _ in columns.transformers]
    return rewritten
