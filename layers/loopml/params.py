"""Training parameters: what a recipe is built from, apart from training itself.

State machine input, the retraining workflow's models and the OpenAPI document read them, and none of those
may import scikit-learn (the compiled-runtime inference function has none): ``loopml.training`` does.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

ModelType = Literal["logistic_regression", "ridge", "hist_gradient_boosting", "random_forest", "user_estimator"]


# The random_forest recipe's smallest leaves. Fully grown trees (scikit-learn's 1) fit noise: on the bundled
# loan data, held out, 3 rows per leaf scored the best AUC and log-loss of 1-10 for classification, and 5
# (R randomForest's default for regression) a lower error than 1 for regression; both models are 40% and
# 84% smaller, which is cold start and memory for every serving environment.
FOREST_LEAF = {"classification": 3, "regression": 5}


class TrainingParams(BaseModel, extra="forbid"):
    model_type: ModelType = "logistic_regression"
    regularization_c: float = Field(1.0, gt=0)
    max_iter: int = Field(1000, ge=10)
    n_estimators: int = Field(100, ge=1, le=2000)
    max_depth: int | None = Field(None, ge=1)
    # random_forest: the fewest training rows a leaf holds; None is the recipe's (FOREST_LEAF)
    min_samples_leaf: int | None = Field(None, ge=1)
    learning_rate: float = Field(0.1, gt=0, le=1)
    validation_fraction: float = Field(0.2, gt=0.05, lt=0.5)
    seed: int = 42
    estimator: str | None = None  # user_estimator: what it is, as ``user_model.describe`` writes it
    estimator_params: dict[str, Any] = Field(default_factory=dict)  # user_estimator: set_params overrides
