"""CDK entry point: ``python infra/app.py`` (``make synth``) or ``cdk synth`` with ``infra/cdk.json``.

Context: ``stage`` (default ``dev``) and ``model`` (default ``default``) choose the deployment; also
``architecture`` (x86_64|arm64), ``log_retention_days`` and ``provisioned_concurrency``
(``inference=2``). Without the CDK CLI pass them as ``--stage prod --model churn`` or ``-c key=value``.
Synthesis is offline: no lookups, environment-agnostic. It builds the Lambda layers with
``layers/build.py`` (pip fetches wheels only when the pinned set changed); ``--no-layers`` (context
``aws:cdk:bundling-stacks=[]``) skips that for a template-only synth.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, Python puts infra/ first on sys.path, where infra/constructs would shadow the
# `constructs` library; import the app as the `infra` package from the repository root instead.
if sys.path and Path(sys.path[0]).resolve() == ROOT / "infra":
    sys.path[0] = str(ROOT)
elif str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "18,20")

from aws_cdk import App, Validations  # noqa: E402
from cdk_nag import AwsSolutionsChecks  # noqa: E402

from infra.constructs.deployment import Deployment  # noqa: E402
from infra.stack import LoopmlStack  # noqa: E402
from loopml.topology import TOPOLOGY, Topology  # noqa: E402

# Set here rather than only in cdk.json so `python infra/app.py` and the tests synthesize the same.
FEATURE_FLAGS: dict[str, object] = {
    # Access logs are delivered under a bucket policy, so the log bucket can disable ACLs.
    "@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy": True,
}


def build_app(
    context: dict[str, object] | None = None, outdir: str | None = None, topology: Topology = TOPOLOGY
) -> tuple[App, LoopmlStack]:
    """The app with its one stack (per stage) and cdk-nag's AWS Solutions checks as a validation plugin."""
    app = App(context={**FEATURE_FLAGS, **(context or {})}, outdir=outdir)
    deployment = Deployment.from_context(app.node.try_get_context)
    stack = LoopmlStack(
        app,
        deployment.name("stack"),
        deployment=deployment,
        topology=topology,
        description=f"loopml {deployment.stage}: serverless scikit-learn (model {deployment.model})",
    )
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app, stack


def _parse(argv: list[str]) -> tuple[dict[str, object], str | None]:
    parser = argparse.ArgumentParser(description="Synthesize the loopml CDK app into cdk.out/")
    parser.add_argument("--stage")
    parser.add_argument("--model")
    parser.add_argument("-c", "--context", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--no-layers", action="store_true", help="skip building the layers")
    parser.add_argument("--outdir", help="default: cdk.out (or the CLI's choice)")
    args = parser.parse_args(argv)
    context: dict[str, object] = {}
    for item in args.context:
        key, _, value = item.partition("=")
        try:
            context[key] = json.loads(value)
        except json.JSONDecodeError:
            context[key] = value
    if args.stage:
        context["stage"] = args.stage
    if args.model:
        context["model"] = args.model
    if args.no_layers:
        context["aws:cdk:bundling-stacks"] = []
    outdir = args.outdir or (None if os.environ.get("CDK_OUTDIR") else str(ROOT / "cdk.out"))
    return context, outdir


def main(argv: list[str] | None = None) -> None:
    context, outdir = _parse(sys.argv[1:] if argv is None else argv)
    app, _ = build_app(context, outdir)
    app.synth()


if __name__ == "__main__":
    main()
