"""Drift benchmark: our engine against Evidently's DataDriftPreset on the same synthetic data.

100,000 reference rows, 1,000,000 current rows, 20 numeric + 5 categorical features. Some features are
clearly drifted (mean shift of 1 std, doubled spread, a reshuffled category mix), some slightly, the rest
not at all. Each tool runs in a fresh subprocess reading the same .npz, so peak RSS is comparable; timed
sections exclude imports and data loading for both. Agreement is scored on the clear cases only: on slight
drifts two reasonable tools may differ.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

N_REFERENCE = 100_000
N_CURRENT = 1_000_000
N_NUMERIC = 20
N_CATEGORICAL = 5
CATEGORIES = np.array([f"cat_{i:02d}" for i in range(12)])

# expected verdict per feature: True = clearly drifted, False = clearly not, None = slight (not scored)
_STABLE: list[tuple[str, str, float, float, bool | None]] = [
    (dist, "none", 0.0, 1.0, False) for dist in ["normal", "lognormal", "uniform", "exponential", "bimodal"] * 3
]
NUMERIC_PLAN: list[tuple[str, str, float, float, bool | None]] = [
    # (distribution, how, shift in std, scale, expected)
    ("normal", "shift", 1.0, 1.0, True),
    ("lognormal", "shift", 1.0, 1.0, True),
    ("uniform", "shift", 1.0, 1.0, True),
    ("exponential", "shift", 1.0, 1.0, True),
    ("bimodal", "shift", 1.0, 1.0, True),
    ("normal", "scale", 0.0, 2.0, True),
    ("normal", "shift", 0.05, 1.0, None),
    ("uniform", "shift", 0.08, 1.0, None),
    ("exponential", "shift", 0.12, 1.0, None),
    *_STABLE[: N_NUMERIC - 9],
]
CATEGORICAL_PLAN: list[tuple[float, bool | None]] = [
    (1.0, True),
    (0.08, None),
    (0.0, False),
    (0.0, False),
    (0.0, False),
]


def _sample(rng: np.random.Generator, dist: str, n: int) -> np.ndarray:
    if dist == "normal":
        return rng.normal(10.0, 2.0, n)
    if dist == "lognormal":
        return rng.lognormal(0.0, 0.5, n)
    if dist == "uniform":
        return rng.uniform(-5.0, 5.0, n)
    if dist == "exponential":
        return rng.exponential(3.0, n)
    return np.where(rng.random(n) < 0.4, rng.normal(-2.0, 1.0, n), rng.normal(3.0, 1.5, n))


def generate(seed: int = 7, n_reference: int = N_REFERENCE, n_current: int = N_CURRENT) -> dict[str, np.ndarray]:
    """Reference and current matrices (numeric float64, categorical fixed-width strings) plus names."""
    rng = np.random.default_rng(seed)
    num_names = [f"num_{j:02d}" for j in range(N_NUMERIC)]
    cat_names = [f"cat_{j}" for j in range(N_CATEGORICAL)]
    ref_num = np.empty((n_reference, N_NUMERIC))
    cur_num = np.empty((n_current, N_NUMERIC))
    for j, (dist, how, shift, scale, _) in enumerate(NUMERIC_PLAN):
        ref = _sample(rng, dist, n_reference)
        cur = _sample(rng, dist, n_current)
        std = ref.std()
        if how == "shift":
            cur = cur + shift * std
        elif how == "scale":
            cur = ref.mean() + (cur - ref.mean()) * scale
        ref_num[:, j] = ref
        cur_num[:, j] = cur
    base = rng.dirichlet(np.full(CATEGORIES.size, 3.0), N_CATEGORICAL)
    ref_cat = np.empty((n_reference, N_CATEGORICAL), dtype=CATEGORIES.dtype)
    cur_cat = np.empty((n_current, N_CATEGORICAL), dtype=CATEGORIES.dtype)
    for j, (change, _) in enumerate(CATEGORICAL_PLAN):
        p = base[j]
        q = (1 - change) * p + change * p[::-1]  # mirror the category mix by the given amount
        ref_cat[:, j] = CATEGORIES[rng.choice(CATEGORIES.size, n_reference, p=p)]
        cur_cat[:, j] = CATEGORIES[rng.choice(CATEGORIES.size, n_current, p=q / q.sum())]
    return {
        "num_names": np.array(num_names),
        "cat_names": np.array(cat_names),
        "ref_num": ref_num,
        "cur_num": cur_num,
        "ref_cat": ref_cat,
        "cur_cat": cur_cat,
    }


def expected_verdicts() -> dict[str, bool | None]:
    out: dict[str, bool | None] = {f"num_{j:02d}": plan[4] for j, plan in enumerate(NUMERIC_PLAN)}
    out.update({f"cat_{j}": plan[1] for j, plan in enumerate(CATEGORICAL_PLAN)})
    return out


def as_objects(values: np.ndarray) -> np.ndarray:
    """Fixed-width strings to an object array sharing one str per category (as both tools receive them)."""
    uniques, inverse = np.unique(values, return_inverse=True)
    return uniques.astype(object)[inverse]


def save(data: dict[str, np.ndarray], path: Path) -> None:
    """One array per column, so a reader loads each column once without slicing a matrix."""
    arrays = {"num_names": data["num_names"], "cat_names": data["cat_names"]}
    for prefix in ("ref", "cur"):
        for j, n in enumerate(data["num_names"]):
            arrays[f"{prefix}_{n}"] = np.ascontiguousarray(data[f"{prefix}_num"][:, j])
        for j, n in enumerate(data["cat_names"]):
            arrays[f"{prefix}_{n}"] = np.ascontiguousarray(data[f"{prefix}_cat"][:, j])
    np.savez(path, **arrays)  # type: ignore[arg-type]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(data_path: str) -> dict[str, Any]:
    """Run in a fresh process: profile the reference, evaluate the current sample, report time and RSS."""
    t0 = time.perf_counter()
    import scipy.stats  # noqa: F401  (imported up front so the timed sections do not pay for it)

    from loopml.schema import FeatureKind, FeatureSchema, FeatureSpec
    from loopml.statistics.engine import DriftConfig, evaluate_data_drift
    from loopml.statistics.profile import build_profile_from_columns

    import_seconds = time.perf_counter() - t0
    data = np.load(data_path)
    num_names = [str(n) for n in data["num_names"]]
    cat_names = [str(n) for n in data["cat_names"]]
    schema = FeatureSchema(
        features=[FeatureSpec(name=n, kind=FeatureKind.numeric) for n in num_names]
        + [FeatureSpec(name=n, kind=FeatureKind.categorical) for n in cat_names],
        target="y",
        classes=[0, 1],
    )

    def columns(prefix: str) -> dict[str, np.ndarray]:
        out = {n: data[f"{prefix}_{n}"] for n in num_names}
        out.update({n: as_objects(data[f"{prefix}_{n}"]) for n in cat_names})
        return out

    reference = columns("ref")
    current = columns("cur")
    baseline = _rss_mb()
    t = time.perf_counter()
    profile = build_profile_from_columns(reference, schema)
    profile_seconds = time.perf_counter() - t
    profile_kb = len(profile.model_dump_json()) / 1024
    del reference
    config = DriftConfig()
    runs = []
    cpu = []
    report = None
    for _ in range(3):
        t, c = time.perf_counter(), time.process_time()
        report = evaluate_data_drift(profile, current, config)
        runs.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    assert report is not None
    peak = _rss_mb()
    import tracemalloc  # numpy reports its buffers to tracemalloc: the engine's own allocations

    tracemalloc.start()
    evaluate_data_drift(profile, current, config)
    traced_peak_mb = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    # integer-coded categoricals (codes into the profile's category list), as a capture job could store them
    coded = dict(current)
    for n in cat_names:
        index = {c: i for i, c in enumerate(profile.features[n].categories)}  # type: ignore[union-attr]
        coded[n] = np.array([index.get(v, len(index)) for v in current[n].tolist()], dtype=np.int32)
    t = time.perf_counter()
    evaluate_data_drift(profile, coded, config)
    coded_seconds = time.perf_counter() - t
    return {
        "import_seconds": import_seconds,
        "profile_seconds": profile_seconds,
        "profile_json_kb": profile_kb,
        "eval_seconds_first": runs[0],
        "eval_seconds_best": min(runs),
        "eval_cpu_seconds_first": cpu[0],
        "eval_seconds_coded": coded_seconds,
        "baseline_rss_mb": baseline,
        "peak_rss_mb": peak,
        "eval_traced_peak_mb": traced_peak_mb,
        "verdict": report.verdict.value,
        "share_drifted": report.share_drifted,
        "columns": {
            f.name: {
                "method": f.method.value if f.method else None,
                "score": f.score,
                "threshold": f.threshold,
                "drifted": f.drifted,
                "psi": f.psi,
                "ks": f.ks_statistic,
                "wasserstein_normed": f.wasserstein_normed,
            }
            for f in report.features
        },
    }


def _accuracy(data: dict[str, np.ndarray], ours: dict[str, Any]) -> dict[str, float]:
    """Largest gap between our profile-based statistics and exact scipy on the raw samples."""
    from scipy.stats import ks_2samp, wasserstein_distance

    w_err = ks_err = 0.0
    for j, name in enumerate(str(n) for n in data["num_names"]):
        ref, cur = data["ref_num"][:, j], data["cur_num"][:, j]
        w = wasserstein_distance(ref, cur) / max(float(ref.std()), 1e-3)
        d = float(ks_2samp(ref, cur, method="asymp").statistic)
        col = ours["columns"][name]
        w_err = max(w_err, abs(col["wasserstein_normed"] - w))
        ks_err = max(ks_err, abs(col["ks"] - d))
    return {"max_abs_error_wasserstein_normed": w_err, "max_abs_error_ks": ks_err}


def _subprocess_json(cmd: list[str], out: Path, timeout: float) -> dict[str, Any]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.read_text())
    return result


SMALL_REFERENCE = 1_000
SMALL_CURRENT = 5_000


def _scenario(data: dict[str, np.ndarray], evidently_python: str | None, accuracy: bool) -> dict[str, Any]:
    result: dict[str, Any] = {"expected": expected_verdicts()}
    with tempfile.TemporaryDirectory(prefix="loopml-bench-") as tmp:
        data_path = Path(tmp) / "data.npz"
        save(data, data_path)
        ours_out = Path(tmp) / "ours.json"
        code = (
            "import json,sys; from loopml_dev.bench.drift import measure; "
            "json.dump(measure(sys.argv[1]), open(sys.argv[2], 'w'))"
        )
        ours = _subprocess_json([sys.executable, "-c", code, str(data_path), str(ours_out)], ours_out, 600)
        if accuracy:
            ours.update(_accuracy(data, ours))
        result["ours"] = ours
        evidently: dict[str, Any] | None = None
        if evidently_python and Path(evidently_python).exists():
            ev_out = Path(tmp) / "evidently.json"
            runner = Path(__file__).with_name("evidently_runner.py")
            evidently = _subprocess_json([evidently_python, str(runner), str(data_path), str(ev_out)], ev_out, 1800)
        result["evidently"] = evidently
    return result


def run(evidently_python: str | None) -> dict[str, Any]:
    """Measure both tools in fresh processes on the large data set, then check verdicts on a small one.

    The small scenario (1,000 reference rows) exercises the p-value tests (KS, chi-square, z-test),
    where our KS p-value is asymptotic and computed from the profile while Evidently's is exact.
    """
    print(f"drift benchmark: {N_REFERENCE:,} reference rows, {N_CURRENT:,} current rows, ", end="")
    print(f"{N_NUMERIC} numeric + {N_CATEGORICAL} categorical features")
    result = _scenario(generate(), evidently_python, accuracy=True)
    _print(result)
    print(f"\nsmall scenario: {SMALL_REFERENCE:,} reference rows, {SMALL_CURRENT:,} current rows (p-value tests)")
    small = _scenario(generate(11, SMALL_REFERENCE, SMALL_CURRENT), evidently_python, accuracy=False)
    _print(small, timings=False)
    result["small"] = small
    return result


def _print(result: dict[str, Any], timings: bool = True) -> None:
    if timings:
        _print_timings(result)
    _print_verdicts(result)


def _print_timings(result: dict[str, Any]) -> None:
    ours = result["ours"]
    ev = result["evidently"]
    print(f"\n{'':34}{'loopml':>12}{'Evidently':>12}")
    ev_time = f"{ev['run_seconds']:.2f} s" if ev else "skipped"
    print(f"{'evaluation time (first run)':34}{ours['eval_seconds_first']:>10.2f} s{ev_time:>12}")
    ev_cpu = f"{ev['run_cpu_seconds']:.2f} s" if ev else "skipped"
    print(f"{'  CPU time of that run':34}{ours['eval_cpu_seconds_first']:>10.2f} s{ev_cpu:>12}")
    print(f"{'evaluation time (best of 3)':34}{ours['eval_seconds_best']:>10.2f} s")
    print(f"{'  with integer-coded categoricals':34}{ours['eval_seconds_coded']:>10.2f} s")
    print(f"{'profile build (training time)':34}{ours['profile_seconds']:>10.2f} s")
    print(f"{'profile JSON size':34}{ours['profile_json_kb']:>9.0f} KB")
    ev_peak = f"{ev['peak_rss_mb']:.0f} MB" if ev else "skipped"
    ev_base = f"{ev['baseline_rss_mb']:.0f} MB" if ev else ""
    print(f"{'peak RSS':34}{ours['peak_rss_mb']:>9.0f} MB{ev_peak:>12}")
    print(f"{'  RSS with data loaded, before run':34}{ours['baseline_rss_mb']:>9.0f} MB{ev_base:>12}")
    print(f"{'  evaluation allocations (traced)':34}{ours['eval_traced_peak_mb']:>9.0f} MB")
    print(f"{'max |W_norm - scipy|':34}{ours['max_abs_error_wasserstein_normed']:>12.2e}")
    print(f"{'max |KS D - scipy|':34}{ours['max_abs_error_ks']:>12.2e}")
    if ev:
        speedup = ev["run_seconds"] / ours["eval_seconds_first"]
        result["speedup"] = speedup
        result["speedup_cpu"] = ev["run_cpu_seconds"] / ours["eval_cpu_seconds_first"]
        print(f"{'speed-up (Evidently / loopml)':34}{speedup:>11.1f}x")
        print(f"{'  in CPU time':34}{result['speedup_cpu']:>11.1f}x")
    else:
        print("Evidently skipped (no --evidently-python); run `make bench` for the comparison")


def _print_verdicts(result: dict[str, Any]) -> None:
    ours = result["ours"]
    ev = result["evidently"]
    print(f"\n{'feature':10}{'expected':>10}{'loopml':>26}{'Evidently':>34}")
    agree = scored = 0
    for name, exp in result["expected"].items():
        o = ours["columns"][name]
        exp_text = {True: "drift", False: "stable", None: "slight"}[exp]
        line = f"{name:10}{exp_text:>10}{o['method']:>16} {o['score']:7.4f} {'D' if o['drifted'] else '-'}"
        if ev and name in ev["columns"]:
            e = ev["columns"][name]
            line += f"{e['method'][:24]:>25} {e['score']:7.4f} {'D' if e['drifted'] else '-'}"
            if exp is not None:
                scored += 1
                agree += e["drifted"] == o["drifted"]
        print(line)
    ours_right = sum(ours["columns"][n]["drifted"] == e for n, e in result["expected"].items() if e is not None)
    clear = sum(e is not None for e in result["expected"].values())
    print(f"\nloopml matches the planted verdict on {ours_right}/{clear} clear cases")
    result["ours_correct_clear"] = ours_right
    if ev:
        ev_right = sum(ev["columns"][n]["drifted"] == e for n, e in result["expected"].items() if e is not None)
        result["evidently_correct_clear"] = ev_right
        result["agreement_clear"] = f"{agree}/{scored}"
        print(f"Evidently matches the planted verdict on {ev_right}/{clear} clear cases")
        print(f"loopml and Evidently agree on {agree}/{scored} clear cases")


if __name__ == "__main__":
    run(sys.argv[1] if len(sys.argv) > 1 else None)
