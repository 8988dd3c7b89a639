"""What the dev venv has and the Lambda layers do not ship: hidden from a function's process.

Users register DataFrame-fitted pipelines from the dev venv, so it has pandas; the dependency layer
(``layers/build.py``) does not. A function on the local stack, or a benchmark's cold start, must see
what a Lambda sees: scikit-learn imports pandas at start when it can (+250 ms) and copes without it,
and a function that would need it fails here as it would there. Loaded by path (no package import).
"""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

NOT_SHIPPED = frozenset({"pandas"})
# A function on the slim layer (``FunctionSpec.layer_set == "slim"``) has no scikit-learn, scipy or joblib
# either: the local stack names them in this variable of its environment, and its worker hides them too.
ENV = "LOOPML_NOT_SHIPPED"
NOT_IN_SLIM = ("sklearn", "scipy", "joblib")


class NotShipped(importlib.abc.MetaPathFinder):
    """``import pandas`` raises ModuleNotFoundError, as where it is not installed (no entry in sys.modules)."""

    def __init__(self, names: frozenset[str] = NOT_SHIPPED) -> None:
        self.names = names

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {fullname!r} (not in the Lambda layers)", name=fullname)
        return None


def hide(more: Sequence[str] = ()) -> None:
    if not any(isinstance(finder, NotShipped) for finder in sys.meta_path):
        sys.meta_path.insert(0, NotShipped(NOT_SHIPPED | {m for m in more if m}))
