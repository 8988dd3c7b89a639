"""JSON on the request path: orjson wherever its answer is the standard library's, ``json`` elsewhere.

A 100-row prediction request is about 20 KB of JSON in and as much out; the standard library spends
longer reading and writing them than onnxruntime spends scoring the rows, and orjson does both 3-15x
faster. Where the two libraries differ, what the service says must not change, so those texts go to
``json``: integers past 64 bits (orjson reads a float), escaped surrogates (the API names a lone one),
and whatever orjson refuses (``NaN`` and ``Infinity`` literals, which field validation names, and
malformed text, which ``json``'s error describes).
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # an escaped UTF-16 surrogate, paired or lone
# 19 digits in a row may be an integer past 64 bits. Found by mapping every digit to "9" and searching:
# a regular expression takes 20 times longer on a text full of numbers.
_DIGITS = bytes(ord("9") if chr(i).isdigit() and i < 128 else ord(" ") for i in range(256))
_LONG_NUMBER = b"9" * 19


def loads(text: str) -> Any:
    """What ``json.loads(text)`` returns or raises."""
    data = text.encode("utf-8", "surrogatepass")  # a lone surrogate is invalid UTF-8: orjson refuses it
    if data.translate(_DIGITS).find(_LONG_NUMBER) < 0 and SURROGATE_ESCAPE.search(text) is None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass  # json.loads reads it (NaN) or raises its own error, below
    return json.loads(text)


def dumps(value: Any) -> str:
    """Compact JSON (numpy scalars and arrays as numbers); an integer past 64 bits is written by ``json``.
    NaN and infinities are written as ``null``: the standard library would write text no JSON parser reads."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
