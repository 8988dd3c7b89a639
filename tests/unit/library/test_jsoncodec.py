"""jsoncodec must answer exactly what the standard library answers, value for value and error for error."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loopml import jsoncodec

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),  # past 64 bits both ways: orjson would read those as floats
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),  # lone surrogates included: json.dumps escapes them
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=4), inner, max_size=4)),
    max_leaves=20,
)


def _outcome(read: Any, text: str) -> tuple[str, Any]:
    try:
        return "value", read(text)
    except (ValueError, RecursionError) as exc:
        return "error", type(exc)


def _same(a: Any, b: Any) -> bool:
    """Equal, with NaN equal to NaN and every number the same type."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_values, st.integers(0, 3), st.data())
def test_loads_reads_what_json_loads_reads_and_refuses_what_it_refuses(value, damage, data):
    text = json.dumps(value)
    if damage == 1 and text:  # cut short: a malformed text
        text = text[: data.draw(st.integers(0, len(text) - 1))]
    elif damage == 2:  # a stray character somewhere
        at = data.draw(st.integers(0, len(text)))
        text = text[:at] + data.draw(st.sampled_from([",", "]", "}", "x", '"', "\\", "\x01"])) + text[at:]
    kind, got = _outcome(jsoncodec.loads, text)
    want_kind, want = _outcome(json.loads, text)
    assert kind == want_kind, (text, got, want)
    assert _same(got, want) if kind == "value" else got is want, (text, got, want)


@pytest.mark.parametrize(
    "text",
    [
        "12345678901234567890",  # past 64 bits: an int, not orjson's float
        "-9223372036854775809",
        '{"a": 1, "a": 2}',  # the last duplicate wins
        '["\\ud83d\\ude00", "\\ud800"]',  # an escaped pair and a lone surrogate
        "1e400",  # infinity, as json reads it
        "NaN",
        '{"x": [1.5, -0.0, 1e-7]}',
    ],
)
def test_the_texts_where_orjson_differs_read_as_json_reads_them(text):
    assert _same(jsoncodec.loads(text), json.loads(text))


def test_dumps_writes_compact_json_that_reads_back_the_same():
    text = jsoncodec.dumps({"a": [1, 2.5, None, True, "é"], "n": np.float64(0.25), "v": np.arange(3)})
    assert " " not in text
    assert json.loads(text) == {"a": [1, 2.5, None, True, "é"], "n": 0.25, "v": [0, 1, 2]}
    assert json.loads(jsoncodec.dumps({"big": -(2**70)})) == {"big": -(2**70)}  # past orjson's 64 bits
    assert json.loads(jsoncodec.dumps({"x": float("nan")})) == {"x": None}  # never the invalid NaN literal
