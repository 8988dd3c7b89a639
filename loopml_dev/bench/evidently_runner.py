"""Run Evidently's default DataDriftPreset on a benchmark .npz and write timings and verdicts as JSON.

Runs in the benchmark venv (Evidently + pandas), never in loopml's: it must not import loopml.
Usage: python evidently_runner.py DATA.npz OUT.json
"""

from __future__ import annotations

import json
import resource
import sys
import time
from typing import Any


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _drifted(method: str, value: float, threshold: float) -> bool:
    """Evidently's own rule: p-value tests drift below the threshold, distances at or above it."""
    if "p_value" in method:
        return value <= threshold if method.startswith("K-S") else value < threshold
    return value >= threshold


def main(data_path: str, out_path: str) -> None:
    started = time.perf_counter()
    import numpy as np
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    import_seconds = time.perf_counter() - started
    data = np.load(data_path)
    num_names = [str(n) for n in data["num_names"]]
    cat_names = [str(n) for n in data["cat_names"]]

    def frame(prefix: str) -> pd.DataFrame:
        columns: dict[str, Any] = {n: data[f"{prefix}_{n}"] for n in num_names}
        for n in cat_names:
            # one str object per category, as loopml's side receives them
            uniques, inverse = np.unique(data[f"{prefix}_{n}"], return_inverse=True)
            columns[n] = uniques.astype(object)[inverse]
        return pd.DataFrame(columns)

    reference = frame("ref")
    current = frame("cur")
    definition = DataDefinition(numerical_columns=num_names, categorical_columns=cat_names)
    ref_ds = Dataset.from_pandas(reference, data_definition=definition)
    cur_ds = Dataset.from_pandas(current, data_definition=definition)
    baseline = _rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    snapshot = Report([DataDriftPreset()]).run(cur_ds, ref_ds)
    run_seconds = time.perf_counter() - t0
    run_cpu_seconds = time.process_time() - c0
    peak = _rss_mb()
    columns: dict[str, Any] = {}
    dataset: dict[str, Any] = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        if config.get("type", "").endswith("ValueDrift"):
            value = float(metric["value"])
            method = str(config["method"])
            threshold = float(config["threshold"])
            columns[config["column"]] = {
                "method": method,
                "score": value,
                "threshold": threshold,
                "drifted": _drifted(method, value, threshold),
            }
        elif config.get("type", "").endswith("DriftedColumnsCount"):
            dataset = {"count": metric["value"]["count"], "share": metric["value"]["share"]}
    result = {
        "import_seconds": import_seconds,
        "run_seconds": run_seconds,
        "run_cpu_seconds": run_cpu_seconds,
        "baseline_rss_mb": baseline,
        "peak_rss_mb": peak,
        "columns": columns,
        "dataset": dataset,
    }
    with open(out_path, "w") as fh:
        json.dump(result, fh)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: evidently_runner.py DATA.npz OUT.json")
    main(sys.argv[1], sys.argv[2])
