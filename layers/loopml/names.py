"""Names that become S3 keys, Lambda names or metric dimensions: validated once, the same everywhere.

A model name is checked wherever it enters (request bodies, queue records, state machine input, the
CLI) before it becomes part of a key, so ``"default/predictions/..."`` can never reach another model's
partition.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, WithJsonSchema

from loopml.errors import InvalidInput

MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
# What a model's inference function loads: its compiled form (loopml.compiled, onnxruntime, the slim
# layer) or its pickle (scikit-learn, the full layer). Declared per model (loopml.topology.ModelSpec).
Runtime = Literal["compiled", "sklearn"]


def validate_model_name(model: str) -> str:
    if not MODEL_NAME.match(model):
        raise InvalidInput(
            f"model name {model[:80]!r} is invalid: use 1-63 lowercase letters, digits and '-', "
            "starting with a letter or digit",
            [{"loc": ["model"], "msg": "invalid model name", "type": "value_error"}],
        )
    return model


def _model_name_field(value: str) -> str:
    try:
        return validate_model_name(value)
    except InvalidInput as exc:  # inside a pydantic model: a ValueError becomes a 422 naming the field
        raise ValueError(str(exc)) from None


ModelName = Annotated[
    str,
    AfterValidator(_model_name_field),
    WithJsonSchema({"type": "string", "pattern": MODEL_NAME.pattern, "description": "a model name"}),
]
"""A model name as a pydantic field: request and state machine inputs validate it like the registry."""


LANE_ROOT = "/models/"  # every model's routes: /models/<model>/predict, ... (the first model's also un-prefixed)


def lane_prefix(model: str) -> str:
    return f"{LANE_ROOT}{model}"


def lane_function(first: str, first_model: str, model: str) -> str:
    """The name of ``model``'s inference function, from the first model's (``inference`` and
    ``inference-<model>``, as declared; physical names carry the same suffix)."""
    return first if model == first_model else f"{first}-{model}"


def lane_relative(path: str) -> str:
    """``/models/<model>/predict`` -> ``/predict``: what a lane serves under its prefix; other paths as they are."""
    if not path.startswith(LANE_ROOT):
        return path
    rest = path[len(LANE_ROOT) :].partition("/")[2]
    return "/" + rest
