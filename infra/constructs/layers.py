"""The two Lambda layers, built by ``layers/build.py`` during synth (no Docker) and shipped as assets.

Each layer is an asset with a local bundler: synth runs the builder (which skips pip when
``build/layers`` already matches the pinned requirement set) and hands its output to CDK. The asset hash
is the builder's own input digest, so CDK reuses a staged layer without looking at 200 MiB of files,
and tests skip the build entirely with the ``aws:cdk:bundling-stacks`` context set to ``[]``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.constructs.deployment import ROOT, Deployment

BUILD_SCRIPT = ROOT / "layers" / "build.py"
BUILD_OUT = ROOT / "build" / "layers"


@cache
def layer_builder() -> ModuleType:
    """``layers/build.py`` as a module (it is a script, not part of an importable package)."""
    spec = importlib.util.spec_from_file_location("loopml_layer_build", BUILD_SCRIPT)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(BUILD_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@jsii.implements(ILocalBundling)
class _BuildLayer:
    """Runs the builder for one layer and links its output into CDK's staging directory."""

    def __init__(self, which: str, arch: str, out: Path) -> None:
        self.which, self.arch, self.out = which, arch, out

    def try_bundle(self, output_dir: str, *args: Any, **kwargs: Any) -> bool:
        command = [sys.executable, str(BUILD_SCRIPT), "--only", self.which, "--arch", self.arch]
        subprocess.run([*command, "--out", str(self.out)], check=True, stdout=sys.stderr)
        name = "loopml" if self.which == "loopml" else f"{self.which}-{self.arch}"
        shutil.copytree(self.out / name, output_dir, dirs_exist_ok=True, copy_function=_link_or_copy)
        return True


def _link_or_copy(src: str, dst: str) -> None:
    """Hard links: staging a 200 MiB layer into cdk.out then costs nothing."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


class Layers(Construct):
    """``loopml`` (the library without its dev-only parts) and the dependency layers (pinned wheels for
    3.12): ``deps`` (full), ``serving`` (slim: onnxruntime, no scikit-learn), ``compile`` (skl2onnx)."""

    def __init__(self, scope: Construct, construct_id: str, *, deployment: Deployment) -> None:
        super().__init__(scope, construct_id)
        builder = layer_builder()
        arch = deployment.architecture
        runtimes = [lambda_.Runtime.PYTHON_3_12]
        architectures = [deployment.lambda_architecture]
        self.loopml = lambda_.LayerVersion(
            self,
            "Loopml",
            layer_version_name=deployment.name("loopml"),
            description="loopml library (without local/, bench/, cli.py)",
            code=_asset("loopml", arch, builder.loopml_plan().digest),
            compatible_runtimes=runtimes,
            compatible_architectures=architectures,
        )
        descriptions = {
            "deps": "scikit-learn, onnxruntime, pydantic, Powertools, pinned to the training environment",
            "serving": "onnxruntime, numpy, pydantic, Powertools: compiled serving, no scikit-learn",
            "compile": "skl2onnx and onnx: compiling models at registration (on top of deps)",
        }
        made = {
            kind: lambda_.LayerVersion(
                self,
                kind.capitalize(),
                layer_version_name=deployment.name(f"{kind}-{arch}"),
                description=text,
                code=_asset(kind, arch, builder.deps_plan(arch, kind=kind).digest),
                compatible_runtimes=runtimes,
                compatible_architectures=architectures,
            )
            for kind, text in descriptions.items()
        }
        self.deps, self.serving, self.compile = made["deps"], made["serving"], made["compile"]

    @property
    def all(self) -> list[lambda_.ILayerVersion]:
        return [self.deps, self.loopml]

    @property
    def sets(self) -> dict[str, list[lambda_.ILayerVersion]]:
        """Each ``FunctionSpec.layer_set`` as layers, in path order (``layers/build.py`` FUNCTION_LAYERS)."""
        return {
            "full": [self.deps, self.loopml],
            "slim": [self.serving, self.loopml],
            "compile": [self.deps, self.compile, self.loopml],
        }


def _asset(which: str, arch: str, digest: str) -> lambda_.Code:
    return lambda_.Code.from_asset(
        str(ROOT / "layers"),
        asset_hash_type=AssetHashType.CUSTOM,
        asset_hash=f"{which}-{arch}-{digest}",
        bundling=BundlingOptions(
            # Only used if local bundling declined, which it never does: the builder needs no Docker.
            image=DockerImage.from_registry("public.ecr.aws/sam/build-python3.12"),
            local=_BuildLayer(which, arch, BUILD_OUT),
        ),
    )
