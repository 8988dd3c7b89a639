"""Exact statistics against scipy, and profile-based ones against the exact ones."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps
from scipy.spatial.distance import jensenshannon

from loopml.statistics import stats
from loopml.statistics.profile import profile_numeric

SAMPLES = [
    ("normal", lambda rng, n: rng.normal(0, 1, n)),
    ("lognormal", lambda rng, n: rng.lognormal(0, 1, n)),
    ("ties", lambda rng, n: rng.integers(0, 7, n).astype(float)),
    ("bimodal", lambda rng, n: np.where(rng.random(n) < 0.3, rng.normal(-3, 1, n), rng.normal(2, 0.5, n))),
]


@pytest.mark.parametrize(("name", "gen"), SAMPLES)
@pytest.mark.parametrize(("n", "m", "shift"), [(300, 200, 0.0), (2000, 5000, 0.3), (57, 1000, 1.0)])
def test_ks_and_wasserstein_match_scipy(name, gen, n, m, shift):
    rng = np.random.default_rng(n + m)
    ref, cur = gen(rng, n), gen(rng, m) + shift
    d, p = stats.ks_2samp(ref, cur)
    expected = sps.ks_2samp(ref, cur, method="asymp")
    assert d == pytest.approx(expected.statistic, abs=1e-9)
    assert p == pytest.approx(expected.pvalue, abs=1e-9)
    assert stats.wasserstein(ref, cur) == pytest.approx(sps.wasserstein_distance(ref, cur), abs=1e-9)
    assert stats.wasserstein_normed(ref, cur) == pytest.approx(
        sps.wasserstein_distance(ref, cur) / np.std(ref), abs=1e-9
    )


def test_nan_is_ignored_by_exact_functions():
    rng = np.random.default_rng(0)
    ref, cur = rng.normal(size=500), rng.normal(size=400)
    ref_nan = np.concatenate([ref, [np.nan] * 10])
    assert stats.ks_2samp(ref_nan, cur) == stats.ks_2samp(ref, cur)
    assert stats.wasserstein(ref_nan, cur) == stats.wasserstein(ref, cur)


@pytest.mark.parametrize("seed", range(5))
def test_chi_square_matches_contingency(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(3, 9))
    ref = rng.integers(0, 500, k)
    cur = rng.integers(0, 800, k)
    ref[0] = 0  # a category only the current sample has
    stat, p = stats.chi_square(ref, cur)
    expected = sps.chi2_contingency(np.vstack([ref, cur]), correction=False)
    assert stat == pytest.approx(expected.statistic, abs=1e-9)
    assert p == pytest.approx(expected.pvalue, abs=1e-9)


def test_chi_square_degenerate_tables():
    assert stats.chi_square(np.array([10, 0]), np.array([5, 0])) == (0.0, 1.0)
    assert stats.chi_square(np.array([0, 0]), np.array([5, 3])) == (0.0, 1.0)


@pytest.mark.parametrize("seed", range(5))
def test_jensen_shannon_matches_scipy_natural_log(seed):
    rng = np.random.default_rng(seed)
    p = rng.integers(0, 100, 10).astype(float)
    q = rng.integers(0, 100, 10).astype(float)
    q[3] = 0
    assert stats.jensen_shannon(p, q) == pytest.approx(jensenshannon(p, q), abs=1e-9)
    assert stats.jensen_shannon(p, p) == pytest.approx(0.0, abs=1e-9)
    # disjoint supports reach the natural-log maximum sqrt(ln 2)
    assert stats.jensen_shannon(np.array([1, 0]), np.array([0, 1])) == pytest.approx(math.sqrt(math.log(2)))


def _psi_direct(ref, cur, bins=10, eps=1e-4):
    ref_sorted = np.sort(ref)
    edges = []
    for i in range(1, bins):
        # inverted-CDF quantile: smallest value whose ECDF reaches i / bins
        edges.append(ref_sorted[math.ceil(i * len(ref) / bins) - 1])
    edges = sorted({e for e in edges if e < ref_sorted[-1]})
    total = 0.0
    bounds = [-math.inf, *edges, math.inf]
    for lo, hi in itertools.pairwise(bounds):
        r = max(np.sum((ref > lo) & (ref <= hi)) / len(ref), eps)
        c = max(np.sum((cur > lo) & (cur <= hi)) / len(cur), eps)
        total += (c - r) * math.log(c / r)
    return total


@pytest.mark.parametrize(("name", "gen"), SAMPLES)
def test_psi_matches_direct_formula(name, gen):
    rng = np.random.default_rng(3)
    ref, cur = gen(rng, 3001), gen(rng, 2000) * 1.2 + 0.1
    assert stats.psi(ref, cur) == pytest.approx(_psi_direct(ref, cur), abs=1e-9)


def test_proportion_z_test_matches_formula():
    z, p = stats.proportion_z_test(30, 100, 60, 150)
    p1, p2, pooled = 0.3, 0.4, 90 / 250
    z_expected = (p1 - p2) / math.sqrt(pooled * (1 - pooled) * (1 / 100 + 1 / 150))
    assert z == pytest.approx(z_expected, abs=1e-12)
    assert p == pytest.approx(math.erfc(abs(z_expected) / math.sqrt(2)), abs=1e-12)
    assert stats.proportion_z_test(5, 5, 9, 9) == (0.0, 1.0)


@pytest.mark.parametrize(("name", "gen"), SAMPLES)
def test_grid_index_equals_searchsorted(name, gen):
    rng = np.random.default_rng(11)
    ref = np.sort(gen(rng, 20_000))
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, 201), method="inverted_cdf"))
    values = np.concatenate([gen(rng, 100_000) * 1.5 - 0.5, edges, np.nextafter(edges, np.inf), edges - 1e-9])
    assert np.array_equal(stats.grid_index(edges, values), np.searchsorted(edges, values, side="left"))


def _grid_stats(ref, cur, grid_size=200):
    prof = profile_numeric(ref, grid_size)
    edges, rc, rs = prof.grid()
    cc, cs = stats.grid_reduce(edges, cur)
    ks = stats.ks_grid(edges, rc, cc, int(np.count_nonzero(cur < edges[0])))
    w = stats.wasserstein_grid(edges, rc, rs, cc, cs, discrete=prof.distinct is not None) / prof.std
    return ks, w


# Tolerances of the profile-based statistics (grid of 200): KS can miss at most the share one grid bin
# holds (1/200 for the reference) and Wasserstein normalised by std stays within 3e-3.
KS_TOLERANCE = 1 / 200 + 1e-9
W_TOLERANCE = 3e-3


@pytest.mark.parametrize(("name", "gen"), SAMPLES)
@pytest.mark.parametrize("shift", [0.0, 0.05, 0.5, 2.0])
def test_grid_statistics_approximate_exact_ones(name, gen, shift):
    rng = np.random.default_rng(5)
    ref, cur = gen(rng, 50_000), gen(rng, 80_000) + shift
    ks, w = _grid_stats(ref, cur)
    ks_exact = sps.ks_2samp(ref, cur, method="asymp").statistic
    w_exact = sps.wasserstein_distance(ref, cur) / ref.std()
    assert ks <= ks_exact + 1e-12  # evaluated where both ECDFs are exact: never above the truth
    assert ks_exact - ks <= KS_TOLERANCE
    assert abs(w - w_exact) <= W_TOLERANCE


def test_grid_ks_is_exact_for_discrete_features():
    rng = np.random.default_rng(2)
    ref = rng.integers(0, 40, 5000).astype(float)
    cur = rng.integers(3, 45, 7000).astype(float)
    ks, w = _grid_stats(ref, cur)
    assert ks == pytest.approx(sps.ks_2samp(ref, cur).statistic, abs=1e-12)
    assert w == pytest.approx(sps.wasserstein_distance(ref, cur) / ref.std(), abs=1e-9)
