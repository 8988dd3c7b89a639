from __future__ import annotations

import math
from typing import Any

import pytest

from loopml.errors import InvalidInput
from loopml.schema import FeatureKind, RequestValidator, SchemaConfig, infer_schema


def test_infers_kinds_ranges_categories_and_nullability(loan_schema):
    assert loan_schema.target == "default"
    assert loan_schema.classes == [0, 1]
    age = loan_schema.feature("age")
    assert age.kind is FeatureKind.numeric and not age.nullable
    assert 18 <= age.minimum < age.maximum <= 90
    assert loan_schema.feature("income").nullable
    home = loan_schema.feature("home_ownership")
    assert home.kind is FeatureKind.categorical
    assert set(home.categories) == {"rent", "mortgage", "own", "other"}
    assert loan_schema.sensitive_names == ["gender"]


def test_csv_strings_are_numbers_when_they_all_parse():
    schema = infer_schema({"x": ["1", "2.5", "", "NA"], "c": ["a", "b", "a", "1"], "y": ["0", "1", "0", "1"]}, "y")
    assert schema.feature("x").kind is FeatureKind.numeric and schema.feature("x").nullable
    assert schema.feature("c").kind is FeatureKind.categorical
    assert schema.classes == [0, 1]


def test_config_overrides_kind_and_drops_columns():
    columns = {"zip": ["1000", "2000", "1000"], "id": ["a", "b", "c"], "y": ["x", "y", "x"]}
    config = SchemaConfig.model_validate({"features": {"zip": {"kind": "categorical"}}, "drop": ["id"]})
    schema = infer_schema(columns, "y", config)
    assert schema.names == ["zip"]
    assert schema.feature("zip").categories == ["1000", "2000"]


@pytest.mark.parametrize(
    ("columns", "target", "needle"),
    [
        ({"a": [1, 2]}, "y", "target column 'y' not found"),
        ({"a": [1, 2], "y": [1, 1]}, "y", "single class"),
        ({"a": [1, 2], "y": [1, None]}, "y", "missing values"),
        ({"y": [0, 1]}, "y", "no feature columns"),
    ],
)
def test_unusable_data_is_named(columns, target, needle):
    with pytest.raises(InvalidInput, match=needle):
        infer_schema(columns, target)


def test_config_naming_unknown_columns_is_rejected():
    with pytest.raises(InvalidInput, match="not in the data"):
        infer_schema({"a": [1, 2], "y": [0, 1]}, "y", SchemaConfig(drop=["nope"]))


def test_validator_names_every_bad_field(loan_schema, loan_columns):
    from loopml_dev.datasets import rows

    good = rows(loan_columns)[0]
    bad = dict(good)
    bad.pop("age")
    bad["credit_score"] = "high"
    bad["purpose"] = 3
    bad["debt_to_income"] = math.inf
    bad["surprise"] = 1
    bad["region"] = None  # region never had missing values in training
    with pytest.raises(InvalidInput) as info:
        RequestValidator(loan_schema).validate([good, bad])
    found = {(tuple(e["loc"]), e["type"]) for e in info.value.errors}
    assert found == {
        (("body", "instances", 1, "age"), "missing"),
        (("body", "instances", 1, "credit_score"), "float_type"),
        (("body", "instances", 1, "purpose"), "string_type"),
        (("body", "instances", 1, "debt_to_income"), "finite_number"),
        (("body", "instances", 1, "surprise"), "extra_forbidden"),
        (("body", "instances", 1, "region"), "null"),
    }


def test_validator_flags_unusual_but_valid_rows(loan_schema, loan_columns):
    from loopml_dev.datasets import rows

    row = dict(rows(loan_columns)[0])
    row["age"] = 150.0
    row["purpose"] = "yacht"
    row["income"] = None
    matrix, flags = RequestValidator(loan_schema).validate([row], ("body", "instance"), index_rows=False)
    assert flags[0].out_of_range == ["age"]
    assert flags[0].unseen_category == ["purpose"]
    assert flags[0].missing == ["income"]
    assert math.isnan(matrix[0, loan_schema.names.index("income")])


def test_booleans_are_not_numbers(loan_schema, loan_columns):
    from loopml_dev.datasets import rows

    row = dict(rows(loan_columns)[0])
    row["age"] = True
    with pytest.raises(InvalidInput) as info:
        RequestValidator(loan_schema).validate([row])
    assert info.value.errors[0]["loc"][-1] == "age"


def _values(spec: Any) -> Any:
    """Mostly what the field takes (so whole rows are often valid), sometimes anything at all."""
    from hypothesis import strategies as st

    anything = st.one_of(st.none(), st.booleans(), st.integers(-(10**17), 10**17), st.text(max_size=3))
    if spec.kind is FeatureKind.numeric:
        edges = [spec.minimum, spec.maximum, 1e15, -1e15, 10**15 + 1, 1e300, math.inf, math.nan]
        valid = st.one_of(st.floats(-1e15, 1e15), st.integers(-(10**15), 10**15), st.sampled_from(edges[:4]))
        odd = st.one_of(st.floats(allow_nan=True), st.sampled_from([e for e in edges if e is not None]), anything)
    else:
        valid = st.one_of(st.sampled_from(spec.categories or ["x"]), st.text(max_size=5))
        odd = st.one_of(st.text(min_size=250, max_size=300), anything)
    if spec.nullable:
        valid = st.one_of(valid, st.none())
    return st.integers(0, 15).flatmap(lambda i: odd if i == 0 else valid)  # one_of would merge repeats


def test_the_column_pass_agrees_with_the_row_by_row_checks_on_any_input(loan_schema):
    """The fast path must give the very matrix and flags the row-by-row checks give, and refuse what they refuse."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    validator = RequestValidator(loan_schema)
    row = st.fixed_dictionaries({f.name: _values(f) for f in loan_schema.features})
    odd_row = st.dictionaries(st.text(max_size=4), st.none(), max_size=2)
    rows = st.lists(st.integers(0, 8).flatmap(lambda i: odd_row if i == 0 else row), min_size=1, max_size=4)
    compared = []

    @settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(rows)
    def check(batch: list[Any]) -> None:
        fast = validator._valid_columns(batch)
        try:
            slow = validator.row_by_row(batch)
        except InvalidInput:
            assert fast is None
            return
        assert fast is not None, "the column pass declined input the row-by-row checks accept"
        (fm, ff), (sm, sf) = fast, slow
        assert fm.shape == sm.shape
        for a, b in zip(fm.ravel().tolist(), sm.ravel().tolist(), strict=True):
            assert (a == b and type(a) is type(b)) or (a != a and b != b), (a, b)
        assert [(f.out_of_range, f.unseen_category, f.missing) for f in ff] == [
            (f.out_of_range, f.unseen_category, f.missing) for f in sf
        ]
        compared.append(len(batch))

    check()
    assert len(compared) > 50  # the premise: many batches were valid, so both paths were compared
