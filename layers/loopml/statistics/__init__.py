"""Drift engine: reference profiles at training time, data/prediction/label drift, quality, performance, bias.

Importing this package pulls numpy and pydantic only; scipy is imported when a p-value is first needed.
"""

from loopml.statistics.bias import (
    AttributeBias,
    BiasConfig,
    BiasReport,
    GroupMetrics,
    RegressionBiasReport,
    evaluate_bias,
    evaluate_regression_bias,
)
from loopml.statistics.engine import (
    DataDriftReport,
    DriftConfig,
    DriftMethod,
    DriftVerdict,
    FeatureDrift,
    FeatureDriftConfig,
    PredictionDriftReport,
    PsiLevel,
    evaluate_data_drift,
    evaluate_label_drift,
    evaluate_prediction_drift,
    evaluate_target_drift,
    evaluate_value_drift,
)
from loopml.statistics.performance import (
    MetricEstimate,
    PerformanceConfig,
    PerformanceReport,
    PerformanceVerdict,
    evaluate_performance,
    evaluate_regression_performance,
)
from loopml.statistics.profile import (
    CategoricalProfile,
    NumericProfile,
    PredictionProfile,
    ReferenceProfile,
    build_profile,
    build_profile_from_columns,
    columns_from_matrix,
)
from loopml.statistics.quality import DataQualityReport, QualityConfig, evaluate_data_quality
from loopml.statistics.report_html import render_html

__all__ = [
    "AttributeBias",
    "BiasConfig",
    "BiasReport",
    "CategoricalProfile",
    "DataDriftReport",
    "DataQualityReport",
    "DriftConfig",
    "DriftMethod",
    "DriftVerdict",
    "FeatureDrift",
    "FeatureDriftConfig",
    "GroupMetrics",
    "MetricEstimate",
    "NumericProfile",
    "PerformanceConfig",
    "PerformanceReport",
    "PerformanceVerdict",
    "PredictionDriftReport",
    "PredictionProfile",
    "PsiLevel",
    "QualityConfig",
    "ReferenceProfile",
    "RegressionBiasReport",
    "build_profile",
    "build_profile_from_columns",
    "columns_from_matrix",
    "evaluate_bias",
    "evaluate_data_drift",
    "evaluate_data_quality",
    "evaluate_label_drift",
    "evaluate_performance",
    "evaluate_prediction_drift",
    "evaluate_regression_bias",
    "evaluate_regression_performance",
    "evaluate_target_drift",
    "evaluate_value_drift",
    "render_html",
]
