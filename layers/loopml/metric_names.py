"""Every CloudWatch metric loopml emits or reads, named once: the emitters, the canary check, its alarms
and the dashboards use these, so a rename cannot leave a reader watching a metric nobody emits."""

from __future__ import annotations

# --- dimensions (Powertools adds ``service`` from POWERTOOLS_SERVICE_NAME) ---------------------------
MODEL = "model"
MODEL_VERSION = "model_version"
SERVICE = "service"
FEATURE = "feature"

# --- inference, per model version -------------------------------------------------------------------
LATENCY = "Latency"  # ms, in-handler
PREDICTIONS = "Predictions"
DEGRADED = "Degraded"
CONFIDENCE = "Confidence"  # mean of the request's rows
CAPTURE_FAILURES = "CaptureFailures"
PREDICTED_CLASS = "PredictedClass_"  # + the class label
PREDICTED_VALUE = "PredictedValue"  # regression: mean of the request's rows


# --- drift, per model --------------------------------------------------------------------------------
DRIFT_ROWS = "DriftRows"
LABELLED_ROWS = "LabelledRows"
DATASET_DRIFT_SHARE = "DatasetDriftShare"
DRIFTED_FEATURES = "DriftedFeatures"
DATA_DRIFT_DETECTED = "DataDriftDetected"
PREDICTION_DRIFT_SCORE = "PredictionDriftScore"
PERFORMANCE_REGRESSED = "PerformanceRegressed"
RETRAINING_STARTED = "RetrainingStarted"
FEATURE_DRIFT_SCORE = "FeatureDriftScore"  # per feature
FEATURE_PSI = "FeaturePsi"  # per feature
LIVE_PERFORMANCE = {
    "accuracy": "LiveAccuracy",
    "f1_macro": "LiveF1Macro",
    "roc_auc": "LiveRocAuc",
    "ece": "LiveEce",
    "rmse": "LiveRmse",
    "mae": "LiveMae",
    "interval_coverage": "LiveIntervalCoverage",
}
LOWER_BOUND = "Lower"  # suffix of a live metric's lower confidence bound

# --- Lambda's own, read by the canary check ----------------------------------------------------------
LAMBDA_NAMESPACE = "AWS/Lambda"
INVOCATIONS = "Invocations"
ERRORS = "Errors"
