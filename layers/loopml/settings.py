"""Typed per-function configuration, validated once at cold start.

Each function declares a ``FunctionSettings`` subclass; ``load()`` reads the environment and fails with
a message naming every missing or invalid variable, so a misconfigured deployment fails its first
invocation loudly instead of half-working.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Self

from pydantic import BaseModel, ValidationError

from loopml.errors import ConfigurationError


class FunctionSettings(BaseModel, frozen=True):
    """Field names are the environment variable names, lower-cased."""

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None) -> Self:
        env = os.environ if environ is None else environ
        values = {name: env[name.upper()] for name in cls.model_fields if name.upper() in env}
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = []
            for err in exc.errors():
                var = str(err["loc"][0]).upper() if err["loc"] else "?"
                reason = "is not set" if err["type"] == "missing" else f"is invalid: {err['msg']}"
                problems.append(f"{var} {reason}")
            raise ConfigurationError(f"{cls.__name__}: " + "; ".join(problems)) from None
