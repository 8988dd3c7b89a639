"""A model's compiled form: an ONNX graph and what serving it needs, scored by onnxruntime alone.

This module is what the compiled-runtime inference function loads, so it imports neither scikit-learn,
scipy nor joblib, and nothing in it unpickles: the ``.onnx`` bytes are verified against the SHA-256 the
registry recorded, then parsed. ``loopml.compilation`` writes them at registration.

Two shapes of graph:
- ``transformed``: a recipe. Its preprocessing (median imputation, standard scaling, one-hot encoding)
  runs here in float64 numpy, from the statistics exported at registration, and only the estimator is in
  the graph (float32 input). Imputing and scaling in float32 inside the graph would move values onto
  float32 tree thresholds (FACTS.md: HistGradientBoosting differs by up to 0.37 that way); in float64
  the transformed values are scikit-learn's, bit for bit, before the one cast.
- ``columns``: a user's pipeline, converted whole, one graph input per feature column (float32 numbers,
  string categories).

Linear recipes carry their coefficients, so an explanation needs no graph at all.
"""

from __future__ import annotations

from itertools import repeat
from typing import Literal

import numpy as np
from pydantic import BaseModel

from loopml.data import verify_sha256
from loopml.errors import IntegrityError

SPEC_KEY = "loopml"  # the ONNX model's metadata_props entry holding the CompiledSpec
FORMAT = 1


class Prep(BaseModel):
    """A recipe's ColumnTransformer as numbers: numeric columns imputed then scaled, categorical one-hot."""

    numeric: list[int]
    medians: list[float]
    means: list[float]
    scales: list[float]
    categorical: list[int]
    categories: list[list[str]]

    @property
    def width(self) -> int:
        return len(self.numeric) + sum(len(c) for c in self.categories)


class Linear(BaseModel):
    """What an exact linear explanation needs: coefficients (per class, or one row), the transformed
    training mean, and each feature's transformed columns."""

    coef: list[list[float]]
    background: list[float]
    groups: list[list[int]]


class ColumnInput(BaseModel):
    name: str
    kind: Literal["numeric", "categorical"]


class CompiledSpec(BaseModel):
    format: int = FORMAT
    task: Literal["classification", "regression"]
    inputs: Literal["transformed", "columns", "matrix"]  # matrix: a user's all-numeric pipeline, one input
    classes: list[str | int] = []
    prep: Prep | None = None  # inputs == "transformed"
    columns: list[ColumnInput] = []  # inputs == "columns"
    output: str  # the graph output holding probabilities (classification) or values (regression)
    baseline_row: list[float | str]
    halfwidth: float = 0.0
    linear: Linear | None = None


class Preprocessor:
    """A recipe's preprocessing (``Prep``) as arrays and lookups, built once per loaded model: loopml's
    object matrix to the estimator's input in float64, as scikit-learn computes it (impute, then
    ``(x - mean) / scale``; one-hot with unknown categories all zero)."""

    def __init__(self, prep: Prep) -> None:
        self.numeric = prep.numeric
        self.medians = np.asarray(prep.medians, dtype=np.float64)
        self.means = np.asarray(prep.means, dtype=np.float64)
        self.scales = np.asarray(prep.scales, dtype=np.float64)
        self.width = prep.width
        self.categorical = prep.categorical
        # category -> output column, per categorical column; an unknown category's is a spare column past the
        # end (all its ones are cut off), so every row is set by one assignment
        self.onehot: list[dict[str, int]] = []
        offset = len(prep.numeric)
        for cats in prep.categories:
            self.onehot.append({c: offset + i for i, c in enumerate(cats)})
            offset += len(cats)

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        n = len(matrix)
        out = np.zeros((n, self.width + 1), dtype=np.float64)
        if self.numeric:
            values = matrix[:, self.numeric].astype(np.float64)
            missing = np.isnan(values)
            if missing.any():
                values = np.where(missing, self.medians, values)
            values -= self.means
            values /= self.scales
            out[:, : len(self.numeric)] = values
        if self.onehot:
            spare = repeat(self.width)
            at = [
                list(map(index.get, column, spare))
                for index, column in zip(self.onehot, matrix[:, self.categorical].T.tolist(), strict=True)
            ]
            out[np.arange(n)[:, None], np.array(at, dtype=np.intp).T] = 1.0
        return out[:, : self.width]


class CompiledModel:
    """An onnxruntime session over verified bytes, with the scoring interface the predictor uses."""

    def __init__(self, data: bytes, expected_sha256: str, where: str) -> None:
        verify_sha256(data, expected_sha256, where)
        import onnxruntime as ort

        options = ort.SessionOptions()
        # One request at a time per execution environment: threads cost more than they give on 1-2 vCPUs.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
            raw = self.session.get_modelmeta().custom_metadata_map.get(SPEC_KEY)
            self.spec = CompiledSpec.model_validate_json(raw or "")
        except Exception as exc:  # a graph onnxruntime refuses, or no loopml spec in it
            raise IntegrityError(f"{where}: not a loopml compiled model ({type(exc).__name__}: {exc})") from None
        spec = self.spec
        self.classes = list(spec.classes)
        self.baseline_row = np.asarray(spec.baseline_row, dtype=object)
        self.halfwidth = spec.halfwidth
        self._output = [spec.output]
        self._input = self.session.get_inputs()[0].name
        self._columns = [(j, c.name, c.kind == "numeric") for j, c in enumerate(spec.columns)]
        self.coef = np.asarray(spec.linear.coef) if spec.linear else None
        if self.coef is not None and spec.task == "regression":
            self.coef = self.coef[0]
        self.background = np.asarray(spec.linear.background) if spec.linear else None
        self.groups = spec.linear.groups if spec.linear else []
        self._prep = Preprocessor(spec.prep) if spec.prep else None

    def transform(self, matrix: np.ndarray) -> np.ndarray:
        if self._prep is None:
            raise TypeError("a pipeline compiled whole has no exported preprocessing")
        return self._prep(matrix)

    def _feeds(self, matrix: np.ndarray) -> dict[str, np.ndarray]:
        if self._prep is not None:
            return {self._input: self._prep(matrix).astype(np.float32)}
        if self.spec.inputs == "matrix":
            return {self._input: matrix.astype(np.float32)}
        feeds = {}
        for j, name, numeric in self._columns:
            column = matrix[:, j : j + 1]
            feeds[name] = column.astype(np.float32) if numeric else column.astype(str)
        return feeds

    def scores(self, matrix: np.ndarray) -> np.ndarray:
        """Probabilities per class (n, k) in float64, or (regression) values (n,)."""
        out = np.asarray(self.session.run(self._output, self._feeds(matrix))[0], dtype=np.float64)
        return out.reshape(len(matrix)) if self.spec.task == "regression" else out
