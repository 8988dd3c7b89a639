"""Logger, Metrics and Tracer, set up once for every function.

Service name and namespace come from the standard Powertools variables each function's declaration
sets, so handlers only import these three objects.
"""

from __future__ import annotations

import warnings

from aws_lambda_powertools import Logger, Metrics, Tracer

# Routes such as /health emit no metric on purpose; Powertools would warn on every such invocation.
warnings.filterwarnings("ignore", "No application metrics to publish", UserWarning)

logger = Logger()
metrics = Metrics()
tracer = Tracer()
