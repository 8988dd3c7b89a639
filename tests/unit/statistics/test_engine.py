"""Profiles and the drift engine: verdicts, sample-size rules, overrides, input errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loopml.errors import InvalidInput
from loopml.schema import CATEGORY_MISSING, FeatureKind, FeatureSchema, FeatureSpec
from loopml.statistics import stats
from loopml.statistics.engine import (
    DriftConfig,
    DriftMethod,
    DriftVerdict,
    FeatureDriftConfig,
    evaluate_data_drift,
    evaluate_label_drift,
    evaluate_prediction_drift,
)
from loopml.statistics.profile import ReferenceProfile, build_profile, build_profile_from_columns, columns_from_matrix
from loopml.statistics.quality import evaluate_data_quality

CATS = np.array(["red", "green", "blue", "grey"], dtype=object)


def make_schema(n_num: int = 2, n_cat: int = 1) -> FeatureSchema:
    return FeatureSchema(
        features=[FeatureSpec(name=f"x{i}", kind=FeatureKind.numeric) for i in range(n_num)]
        + [FeatureSpec(name=f"c{i}", kind=FeatureKind.categorical) for i in range(n_cat)],
        target="y",
        classes=["no", "yes"],
    )


def make_columns(rng, n, shift=0.0, n_num=2, n_cat=1, cat_p=(0.4, 0.3, 0.2, 0.1)):
    cols = {f"x{i}": rng.normal(5.0 + shift * 2.0, 2.0, n) for i in range(n_num)}
    for i in range(n_cat):
        cols[f"c{i}"] = CATS[rng.choice(4, n, p=np.array(cat_p) / sum(cat_p))]
    return cols


def test_build_profile_from_object_matrix_and_json_roundtrip():
    rng = np.random.default_rng(0)
    schema = make_schema()
    cols = make_columns(rng, 500)
    cols["x0"][:10] = np.nan
    cols["c0"][:5] = CATEGORY_MISSING
    matrix = np.empty((500, 3), dtype=object)
    matrix[:, 0], matrix[:, 1], matrix[:, 2] = cols["x0"], cols["x1"], cols["c0"]
    proba = rng.dirichlet([1, 1], 500)
    labels = rng.choice(["no", "yes"], 500).tolist()
    profile = build_profile(matrix, schema, proba=proba, labels=labels)
    assert profile.features["x0"].missing == 10
    assert profile.features["x0"].n == 490
    assert profile.features["c0"].counts[CATEGORY_MISSING] == 5
    assert sum(profile.predictions.counts) == 500
    assert profile.labels.n == 500
    text = profile.model_dump_json()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert ReferenceProfile.model_validate_json(text) == profile
    typed = columns_from_matrix(matrix, schema)
    assert typed["x0"].dtype == np.float64
    assert typed["c0"].dtype == object


def test_profile_for_25_features_is_compact():
    rng = np.random.default_rng(1)
    schema = make_schema(20, 5)
    profile = build_profile_from_columns(make_columns(rng, 100_000, n_num=20, n_cat=5), schema)
    assert len(profile.model_dump_json()) < 200_000


def test_build_profile_rejects_bad_shapes():
    schema = make_schema()
    with pytest.raises(InvalidInput, match="3 columns"):
        build_profile(np.zeros((4, 2), dtype=object), schema)
    rng = np.random.default_rng(0)
    cols = make_columns(rng, 50)
    with pytest.raises(InvalidInput, match="proba must have shape"):
        build_profile_from_columns(cols, schema, proba=np.zeros((50, 3)))
    with pytest.raises(InvalidInput, match="labels has 3 values"):
        build_profile_from_columns(cols, schema, labels=["no", "yes", "no"])


SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n=st.sampled_from([300, 900, 3000]))
def test_identical_samples_never_drift(seed, n):
    rng = np.random.default_rng(seed)
    schema = make_schema()
    cols = make_columns(rng, n)
    profile = build_profile_from_columns(cols, schema)
    order = rng.permutation(n)
    current = {k: v[order] for k, v in cols.items()}
    report = evaluate_data_drift(profile, current)
    assert report.verdict is DriftVerdict.no_drift
    assert not any(f.drifted for f in report.features)
    for f in report.features:
        assert f.psi == pytest.approx(0.0, abs=1e-9)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n=st.sampled_from([300, 900, 3000]))
def test_one_std_shift_drifts(seed, n):
    rng = np.random.default_rng(seed)
    schema = make_schema()
    profile = build_profile_from_columns(make_columns(rng, n), schema)
    current = make_columns(rng, n, shift=1.0, cat_p=(0.1, 0.2, 0.3, 0.4))
    report = evaluate_data_drift(profile, current)
    assert report.verdict is DriftVerdict.drifted
    assert all(f.drifted for f in report.features)


def test_method_follows_reference_size():
    rng = np.random.default_rng(3)
    schema = make_schema(1, 1)
    small = build_profile_from_columns(make_columns(rng, 800, n_num=1), schema)
    large = build_profile_from_columns(make_columns(rng, 5000, n_num=1), schema)
    current = make_columns(rng, 2000, n_num=1)
    small_report = evaluate_data_drift(small, current)
    large_report = evaluate_data_drift(large, current)
    assert small_report.feature("x0").method is DriftMethod.ks
    assert small_report.feature("x0").p_value is not None
    assert small_report.feature("c0").method is DriftMethod.chi_square
    assert large_report.feature("x0").method is DriftMethod.wasserstein
    assert large_report.feature("c0").method is DriftMethod.jensen_shannon
    # binary categorical with a small reference: proportion z-test
    binary = {"x0": current["x0"][:500], "c0": np.where(rng.random(500) < 0.3, "a", "b").astype(object)}
    profile = build_profile_from_columns(binary, schema)
    assert evaluate_data_drift(profile, binary).feature("c0").method is DriftMethod.z_test


def test_insufficient_data_is_not_no_drift():
    rng = np.random.default_rng(4)
    schema = make_schema()
    profile = build_profile_from_columns(make_columns(rng, 2000), schema)
    report = evaluate_data_drift(profile, make_columns(rng, 40, shift=1.0))
    assert report.verdict is DriftVerdict.insufficient_data
    assert all(f.verdict is DriftVerdict.insufficient_data and not f.drifted for f in report.features)
    custom = evaluate_data_drift(profile, make_columns(rng, 40, shift=1.0), DriftConfig(min_sample_size=20))
    assert custom.verdict is DriftVerdict.drifted


def test_per_feature_threshold_and_method_override():
    rng = np.random.default_rng(5)
    schema = make_schema()
    profile = build_profile_from_columns(make_columns(rng, 5000), schema)
    current = make_columns(rng, 5000, shift=0.1)  # 0.1 std: W around 0.1
    base = evaluate_data_drift(profile, current)
    score = base.feature("x0").score
    config = DriftConfig(
        per_feature={
            "x0": FeatureDriftConfig(threshold=score * 2),
            "x1": FeatureDriftConfig(method=DriftMethod.psi, psi_warn=0.001),
            "c0": FeatureDriftConfig(enabled=False),
        }
    )
    report = evaluate_data_drift(profile, current, config)
    assert report.feature("x0").threshold == pytest.approx(score * 2)
    assert not report.feature("x0").drifted
    assert report.feature("x1").method is DriftMethod.psi
    assert report.feature("x1").psi_level.value in ("warn", "alert")
    assert [f.name for f in report.features] == ["x0", "x1"]
    with pytest.raises(InvalidInput, match="not in the profile"):
        evaluate_data_drift(profile, current, DriftConfig(per_feature={"nope": FeatureDriftConfig()}))
    with pytest.raises(InvalidInput, match="does not apply to categorical"):
        evaluate_data_drift(
            profile, current, DriftConfig(per_feature={"c0": FeatureDriftConfig(method=DriftMethod.ks)})
        )


def test_drift_share_decides_dataset_verdict():
    rng = np.random.default_rng(6)
    schema = make_schema(4, 0)
    profile = build_profile_from_columns(make_columns(rng, 3000, n_num=4, n_cat=0), schema)
    current = make_columns(rng, 3000, n_num=4, n_cat=0)
    current["x0"] = current["x0"] + 2.0  # 1 std
    report = evaluate_data_drift(profile, current)
    assert report.n_drifted == 1
    assert report.share_drifted == pytest.approx(0.25)
    assert report.verdict is DriftVerdict.no_drift
    assert evaluate_data_drift(profile, current, DriftConfig(drift_share=0.25)).verdict is DriftVerdict.drifted


def test_bad_current_input_is_named():
    rng = np.random.default_rng(7)
    schema = make_schema()
    profile = build_profile_from_columns(make_columns(rng, 300), schema)
    current = make_columns(rng, 300)
    with pytest.raises(InvalidInput, match="lacks profiled features"):
        evaluate_data_drift(profile, {"x0": current["x0"]})
    with pytest.raises(InvalidInput, match="differ in length"):
        evaluate_data_drift(profile, {**current, "x1": current["x1"][:10]})
    with pytest.raises(InvalidInput, match="'x0' has non-numeric"):
        evaluate_data_drift(profile, {**current, "x0": np.array(["a"] * 300, dtype=object)})
    with pytest.raises(InvalidInput, match="infinite"):
        evaluate_data_drift(profile, {**current, "x0": np.full(300, np.inf)})


def test_unseen_categories_missing_and_out_of_range_rates():
    rng = np.random.default_rng(8)
    schema = make_schema(1, 1)
    profile = build_profile_from_columns(make_columns(rng, 2000, n_num=1), schema)
    current = make_columns(rng, 1000, n_num=1)
    current["c0"][:100] = "purple"
    current["c0"][100:150] = None
    current["x0"][:200] = np.nan
    current["x0"][200:210] = 1e6
    report = evaluate_data_drift(profile, current)
    c0, x0 = report.feature("c0"), report.feature("x0")
    assert c0.unseen_category_rate == pytest.approx(0.1)
    assert c0.unseen_categories == ["purple"]
    assert c0.missing_rate_current == pytest.approx(0.05)
    assert x0.missing_rate_current == pytest.approx(0.2)
    assert x0.out_of_range_rate == pytest.approx(0.01)
    assert x0.n_current == 800
    quality = evaluate_data_quality(report, type_violations={"x0": 3})
    flagged = {q.name: q for q in quality.features}
    assert quality.flagged
    assert flagged["x0"].missing_increase_significant
    assert flagged["x0"].type_violations == 3
    assert any("unseen" in issue for issue in flagged["c0"].issues)


def test_integer_coded_categoricals_match_strings():
    rng = np.random.default_rng(9)
    schema = make_schema(1, 1)
    profile = build_profile_from_columns(make_columns(rng, 3000, n_num=1), schema)
    current = make_columns(rng, 2000, n_num=1, cat_p=(0.3, 0.3, 0.3, 0.1))
    current["c0"][:20] = "unseen"
    index = {c: i for i, c in enumerate(profile.features["c0"].categories)}
    coded = {**current, "c0": np.array([index.get(v, len(index)) for v in current["c0"]], dtype=np.int32)}
    by_string = evaluate_data_drift(profile, current).feature("c0")
    by_code = evaluate_data_drift(profile, coded).feature("c0")
    assert by_code.score == pytest.approx(by_string.score, abs=1e-12)
    assert by_code.unseen_category_rate == pytest.approx(by_string.unseen_category_rate)


def test_discrete_numeric_is_tested_like_a_categorical():
    rng = np.random.default_rng(10)
    schema = make_schema(1, 0)
    ref = {"x0": rng.integers(0, 3, 5000).astype(float)}
    profile = build_profile_from_columns(ref, schema)
    same = evaluate_data_drift(profile, {"x0": rng.integers(0, 3, 5000).astype(float)}).feature("x0")
    moved = evaluate_data_drift(profile, {"x0": rng.integers(1, 4, 5000).astype(float)}).feature("x0")
    assert same.method is DriftMethod.jensen_shannon
    assert not same.drifted
    assert moved.drifted


def test_report_json_has_no_nan():
    rng = np.random.default_rng(11)
    schema = make_schema()
    profile = build_profile_from_columns(make_columns(rng, 1500), schema)
    current = make_columns(rng, 200)
    current["x0"][:] = np.nan  # a feature with no current values at all
    report = evaluate_data_drift(profile, current)
    json.loads(report.model_dump_json(), parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert report.feature("x0").verdict is DriftVerdict.insufficient_data


def test_prediction_and_label_drift():
    rng = np.random.default_rng(12)
    schema = make_schema()
    n = 3000
    proba = rng.dirichlet([2, 2], n)
    labels = np.where(rng.random(n) < 0.3, "yes", "no")
    profile = build_profile_from_columns(make_columns(rng, n), schema, proba=proba, labels=labels.tolist())
    classes = np.array(schema.classes)
    stable = rng.dirichlet([2, 2], n)
    report = evaluate_prediction_drift(profile, classes[stable.argmax(1)], stable.max(1))
    assert report.verdict is DriftVerdict.no_drift
    skewed = rng.dirichlet([8, 1], n)
    report = evaluate_prediction_drift(profile, classes[skewed.argmax(1)], skewed.max(1))
    assert report.verdict is DriftVerdict.drifted
    assert report.predicted_class.drifted
    assert report.confidence.drifted
    assert not evaluate_label_drift(profile, np.where(rng.random(n) < 0.3, "yes", "no")).drifted
    assert evaluate_label_drift(profile, np.where(rng.random(n) < 0.7, "yes", "no")).drifted


def test_engine_statistics_agree_with_raw_sample_versions():
    rng = np.random.default_rng(13)
    schema = make_schema(1, 1)
    ref = make_columns(rng, 20_000, n_num=1)
    cur = make_columns(rng, 30_000, shift=0.2, n_num=1, cat_p=(0.3, 0.3, 0.3, 0.1))
    profile = build_profile_from_columns(ref, schema)
    report = evaluate_data_drift(profile, cur)
    x0, c0 = report.feature("x0"), report.feature("c0")
    assert x0.psi == pytest.approx(stats.psi(ref["x0"], cur["x0"]), abs=1e-6)
    assert x0.wasserstein_normed == pytest.approx(stats.wasserstein_normed(ref["x0"], cur["x0"]), abs=3e-3)
    assert x0.ks_statistic == pytest.approx(stats.ks_2samp(ref["x0"], cur["x0"])[0], abs=1 / 200)
    keys = sorted(set(ref["c0"]))
    r = np.array([np.sum(ref["c0"] == k) for k in keys])
    c = np.array([np.sum(cur["c0"] == k) for k in keys])
    assert c0.jensen_shannon == pytest.approx(stats.jensen_shannon(r, c), abs=1e-12)
    assert c0.psi == pytest.approx(stats.psi_from_counts(r, c), abs=1e-12)
