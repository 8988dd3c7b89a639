"""Build the Lambda layers without Docker: ``loopml`` (the library) and the dependency layers (wheels).

Dependency layers (``DEPS_LAYERS``), each ``<kind>-<arch>``:
- ``deps``: scikit-learn, scipy, numpy, joblib, pydantic, Powertools, onnxruntime, orjson: every function but a
  compiled-runtime inference function;
- ``serving``: the slim layer of compiled-runtime inference functions: numpy, onnxruntime, orjson, pydantic,
  Powertools, and no scikit-learn, scipy or joblib (the build refuses them);
- ``compile``: skl2onnx and onnx, on top of ``deps``, for the functions that register models (retrain).

The dependency layer is pinned to the exact versions installed in the running (dev) environment: a model
pickled with scikit-learn X is only safe to load with X, so the cloud must run what training ran. pip
fetches manylinux wheels for CPython 3.12 with both manylinux tags (either alone resolves wrong
versions, see FACTS.md), then the tree is trimmed, the packages' own extensions are stripped and
``.pyc`` files are compiled for 3.12. Each layer carries a stamp with the hash of its inputs, so a
rebuild with unchanged inputs does nothing.

boto3/botocore are deliberately not shipped: the Lambda Python runtime provides them and botocore alone
is ~25 MiB zipped / ~90 MiB unzipped, which would push the layer past its budget. loopml only uses
long-stable S3, SQS, Lambda, Step Functions, DynamoDB and CloudWatch calls. ``--with-boto3`` ships the
dev environment's versions instead when a newer API is needed.

Usage: ``python layers/build.py [--arch x86_64|arm64] [--out build/layers] [--only loopml|deps|serving|compile]``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata as metadata
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LOOPML_SRC = ROOT / "layers" / "loopml"  # the package is the layer: nothing in it is left out
DEFAULT_OUT = ROOT / "build" / "layers"

# Bump when the trimming/compiling recipe changes, so stamped layers are rebuilt.
RECIPE = "6"
RUNTIME_PYTHON = "3.12"
# What the functions import at run time; versions come from the dev environment.
ROOT_REQUIREMENTS = ("aws-lambda-powertools[tracer]", "pydantic", "scikit-learn", "joblib", "onnxruntime", "orjson")


@dataclass(frozen=True)
class DepsLayer:
    kind: str
    roots: tuple[str, ...]
    on_top_of: str | None = None  # a layer the function also has: its packages are left out of this one
    forbidden: frozenset[str] = frozenset()
    bytecode: bool = True  # False: no .pyc (a layer only slow paths import, kept under the size limit)
    left_out: frozenset[str] = frozenset()  # declared dependencies nothing in this layer's functions imports
    trim: tuple[str, ...] = ()  # more paths to remove (globs under python/), after TRIM_PATHS


DEPS_LAYERS = {
    "deps": DepsLayer("deps", ROOT_REQUIREMENTS),
    "serving": DepsLayer(
        "serving",
        ("aws-lambda-powertools[tracer]", "pydantic", "numpy", "onnxruntime", "orjson"),
        forbidden=frozenset({"scikit-learn", "scipy", "joblib"}),
        # onnxruntime's Python session API imports none of them (only its model tools and backend do)
        left_out=frozenset({"protobuf", "flatbuffers", "packaging"}),
        # numpy modules serving never loads (numpy 2 imports them lazily): the budget is 90 MiB
        trim=("numpy/f2py", "numpy/random", "numpy/polynomial", "numpy/ma", "numpy/testing", "onnxruntime/backend"),
    ),
    "compile": DepsLayer(
        "compile",
        ("skl2onnx", "onnx", "protobuf"),
        on_top_of="deps",
        bytecode=False,
        trim=("onnx/reference", "onnx/test"),  # onnx's own evaluator and test helpers: skl2onnx uses neither
    ),
}
# Parts of packages no function imports (FACTS.md): onnxruntime's C API for other languages and its
# model tools, onnx's backend test data.
TRIM_PATHS = (
    "onnxruntime/transformers",
    "onnxruntime/quantization",
    "onnxruntime/tools",
    "onnxruntime/capi/libonnxruntime.so*",
    "onnx/backend/test",
    "sklearn/datasets/images",  # load_sample_images' photographs
    "numpy/_core/_simd.*",  # numpy's own SIMD tests
    "numpy/_core/_*_tests.*",
)
# Provided by the Lambda runtime (see module docstring). Their own dependencies are not followed.
RUNTIME_PROVIDED = frozenset({"boto3", "botocore", "s3transfer"})
# Never in the runtime: scikit-learn imports pandas at start when it is installed (+280 ms).
FORBIDDEN = frozenset({"pandas"})

PLATFORMS = {
    "x86_64": ("manylinux_2_28_x86_64", "manylinux2014_x86_64"),
    "arm64": ("manylinux_2_28_aarch64", "manylinux2014_aarch64"),
}
MACHINE = {"x86_64": "x86_64", "arm64": "aarch64"}
# The layer sets functions run with (infra.constructs.layers attaches them by the same names).
FUNCTION_LAYERS = {
    "compiled-runtime inference (slim)": ("serving", "loopml"),
    "scikit-learn runtime inference, drift, feedback, batch, starter (full)": ("deps", "loopml"),
    "retrain (full + compile)": ("deps", "compile", "loopml"),
}
TRIM_SUFFIXES = frozenset({".pyx", ".pxd", ".pxi", ".c", ".cc", ".cpp", ".h", ".pyi", ".proto", ".proto3"})
BUDGET_MIB = 205  # the full layer: scikit-learn, scipy, numpy, onnxruntime
SLIM_BUDGET_MIB = 90  # the serving layer (issue: compiled runtime inference at most 90 MiB without .pyc)
HARD_LIMIT_MIB = 250
MIB = 1024 * 1024


@dataclass(frozen=True)
class LayerPlan:
    """What a layer is made of; ``digest`` identifies its content for stamps and CDK asset hashes."""

    name: str
    digest: str


# --- requirement set ------------------------------------------------------------------------------


def pinned_requirements(
    arch: str = "x86_64", with_boto3: bool = False, roots: Iterable[str] = ROOT_REQUIREMENTS
) -> list[str]:
    """The dependency closure of ``roots``, each pinned to the version installed here.

    Markers are evaluated for the Lambda runtime (CPython 3.12 on Linux), not for this interpreter.
    """
    env: dict[str, str] = {
        **cast("dict[str, str]", default_environment()),
        "python_version": RUNTIME_PYTHON,
        "python_full_version": f"{RUNTIME_PYTHON}.0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "platform_machine": MACHINE[arch],
    }
    skipped = set() if with_boto3 else set(RUNTIME_PROVIDED)
    pins: dict[str, str] = {}
    missing: list[str] = []
    pending = [Requirement(r) for r in roots]
    seen: set[tuple[str, frozenset[str]]] = set()
    while pending:
        req = pending.pop()
        name = canonicalize_name(req.name)
        key = (name, frozenset(req.extras))
        if name in skipped or key in seen:
            continue
        seen.add(key)
        if name in FORBIDDEN:
            raise SystemExit(f"{name} must never be in the Lambda runtime (see FACTS.md)")
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            missing.append(str(req))
            continue
        pins[name] = dist.version
        for raw in dist.requires or []:
            dep = Requirement(raw)
            if dep.marker is None or any(
                dep.marker.evaluate({**env, "extra": extra}) for extra in (req.extras or {""})
            ):
                pending.append(dep)
    if missing:
        raise SystemExit(
            "the dependency layer is pinned to the dev environment, but these are not installed: "
            + ", ".join(sorted(missing))
            + " (run `make install`)"
        )
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


def _digest(parts: Iterable[str]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:32]


def layer_pins(kind: str = "deps", arch: str = "x86_64", with_boto3: bool = False) -> list[str]:
    """The pinned packages of dependency layer ``kind``, without those of the layer it sits on."""
    layer = DEPS_LAYERS[kind]
    pins = pinned_requirements(arch, with_boto3, layer.roots)
    banned = sorted(p for p in pins if canonicalize_name(p.split("==")[0]) in layer.forbidden)
    if banned:
        raise SystemExit(f"the {kind} layer must not hold {banned}: it is what keeps them out of the function")
    if layer.on_top_of:
        below = set(layer_pins(layer.on_top_of, arch, with_boto3))
        pins = [p for p in pins if p not in below]
    return [p for p in pins if canonicalize_name(p.split("==")[0]) not in layer.left_out]


def deps_plan(arch: str = "x86_64", with_boto3: bool = False, kind: str = "deps") -> LayerPlan:
    pins = layer_pins(kind, arch, with_boto3)
    trims = [*TRIM_PATHS, *DEPS_LAYERS[kind].trim]
    return LayerPlan(f"{kind}-{arch}", _digest([RECIPE, kind, arch, *PLATFORMS[arch], *pins, *trims]))


def _loopml_files() -> list[Path]:
    return [
        path
        for path in sorted(LOOPML_SRC.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    ]


def loopml_plan() -> LayerPlan:
    parts = [RECIPE]
    for path in _loopml_files():
        parts += [str(path.relative_to(LOOPML_SRC)), hashlib.sha256(path.read_bytes()).hexdigest()]
    return LayerPlan("loopml", _digest(parts))


def _stamp(out: Path, plan: LayerPlan) -> Path:
    return out / f"{plan.name}.stamp"


def is_current(out: Path, plan: LayerPlan) -> bool:
    """True when ``out/<layer>`` was built from exactly these inputs."""
    stamp = _stamp(out, plan)
    return (out / plan.name / "python").is_dir() and stamp.is_file() and stamp.read_text().strip() == plan.digest


# --- building -------------------------------------------------------------------------------------


def find_python312() -> str:
    """A CPython 3.12 to compile ``.pyc`` with (the runtime rejects bytecode of any other version)."""
    candidates = [os.environ.get("LOOPML_PYTHON312", ""), shutil.which("python3.12") or ""]
    candidates += sorted(str(p) for p in Path.home().glob(".pyenv/versions/3.12*/bin/python3.12"))
    for candidate in filter(None, candidates):
        probe = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 12))"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == "True":
            return candidate
    raise SystemExit("python3.12 not found: set LOOPML_PYTHON312 to a CPython 3.12 interpreter")


def _compile(python312: str, target: Path) -> None:
    # unchecked-hash: CDK zips assets with a fixed timestamp, so mtime-checked .pyc would all be stale
    # on Lambda (and /opt is read-only, so they could not be rewritten): every import would recompile.
    subprocess.run(
        [
            python312,
            "-m",
            "compileall",
            "-q",
            "-j",
            "0",
            "--invalidation-mode",
            "unchecked-hash",
            str(target),
        ],
        check=True,
    )


def _fresh(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def _publish(out: Path, staging: Path, plan: LayerPlan) -> Path:
    final = out / plan.name
    if final.exists():
        shutil.rmtree(final)
    staging.rename(final)
    _stamp(out, plan).write_text(plan.digest + "\n")
    return final


def build_loopml(out: Path, python312: str) -> Path:
    plan = loopml_plan()
    if is_current(out, plan):
        print(f"{plan.name}: up to date")
        return out / plan.name
    staging = _fresh(out / f".{plan.name}.tmp")
    target = staging / "python" / "loopml"
    for path in _loopml_files():
        dest = target / path.relative_to(LOOPML_SRC)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)
    _compile(python312, staging)
    return _publish(out, staging, plan)


def _trim(target: Path, more: tuple[str, ...] = ()) -> None:
    """FACTS.md: removing these takes the installed tree from ~266 MiB to ~160 MiB."""
    shutil.rmtree(target / "bin", ignore_errors=True)
    for pattern in (*TRIM_PATHS, *more):
        for path in target.glob(pattern):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    for path in sorted(target.rglob("*"), reverse=True):  # children before parents
        if path.is_dir() and path.name in {"__pycache__", "tests"}:
            shutil.rmtree(path)
        elif path.is_file() and path.suffix in TRIM_SUFFIXES:
            path.unlink()


def _strip_tool(arch: str) -> str | None:
    if MACHINE[arch] == os.uname().machine:
        return shutil.which("strip")
    return shutil.which(f"{MACHINE[arch]}-linux-gnu-strip")


def _strip(target: Path, arch: str) -> None:
    """Strip the packages' own extensions, never the vendored ``*.libs`` (import breaks, FACTS.md)."""
    tool = _strip_tool(arch)
    if tool is None:
        print(f"warning: no strip for {arch}; extensions are left unstripped (larger layer)")
        return
    objects = [
        str(p)
        for p in target.rglob("*.so*")
        if p.is_file() and not any(part.endswith(".libs") for part in p.relative_to(target).parts)
    ]
    for start in range(0, len(objects), 200):
        subprocess.run([tool, "--strip-unneeded", *objects[start : start + 200]], check=True)


def build_deps(out: Path, python312: str, arch: str = "x86_64", with_boto3: bool = False, kind: str = "deps") -> Path:
    plan = deps_plan(arch, with_boto3, kind)
    if is_current(out, plan):
        print(f"{plan.name}: up to date")
        return out / plan.name
    pins = layer_pins(kind, arch, with_boto3)
    staging = _fresh(out / f".{plan.name}.tmp")
    target = staging / "python"
    _pip_install(target, arch, pins)
    _trim(target, DEPS_LAYERS[kind].trim)
    _strip(target, arch)
    if DEPS_LAYERS[kind].bytecode:
        _compile(python312, staging)
    return _publish(out, staging, plan)


def build_runtime_stand_in(out: Path, arch: str = "x86_64") -> Path:
    """boto3 as the Lambda runtime provides it (at the dev environment's versions), for local tests only.

    The dependency layer leaves boto3 to the runtime; a test that imports handlers outside Lambda needs
    something in the runtime's place. Never deployed.
    """
    pins = pinned_requirements(arch, with_boto3=True, roots=("boto3",))
    plan = LayerPlan(f"runtime-boto3-{arch}", _digest([RECIPE, arch, *pins]))
    if is_current(out, plan):
        return out / plan.name
    staging = _fresh(out / f".{plan.name}.tmp")
    _pip_install(staging / "python", arch, pins)
    return _publish(out, staging, plan)


def _pip_install(target: Path, arch: str, pins: list[str]) -> None:
    platforms = [arg for tag in PLATFORMS[arch] for arg in ("--platform", tag)]
    # --no-deps: the pinned list is already the full closure, and it keeps botocore out.
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps"]
    wheels = ["--only-binary=:all:", "--python-version", RUNTIME_PYTHON, "--implementation", "cp", *platforms]
    subprocess.run([*pip, *wheels, "--target", str(target), *pins], check=True)


# --- reporting ------------------------------------------------------------------------------------


def _sizes(root: Path) -> tuple[int, int]:
    """(bytes without .pyc, bytes of .pyc) under root."""
    plain = pyc = 0
    for path in root.rglob("*") if root.is_dir() else [root]:
        if path.is_file():
            if path.suffix == ".pyc":
                pyc += path.stat().st_size
            else:
                plain += path.stat().st_size
    return plain, pyc


def _groups(python_dir: Path) -> Iterator[tuple[str, list[Path]]]:
    """Top-level packages with their ``*.libs`` and ``*.dist-info`` siblings folded in."""
    groups: dict[str, list[Path]] = {}
    for entry in sorted(python_dir.iterdir()):
        key = entry.name
        if key.endswith(".libs"):
            key = key[: -len(".libs")]
        elif key.endswith(".dist-info"):
            key = key.split("-")[0].lower()
        key = {"scikit_learn": "sklearn"}.get(key, key).removesuffix(".py")
        groups.setdefault(key, []).append(entry)
    yield from groups.items()


def size_report(layer: Path) -> dict[str, tuple[int, int]]:
    """Unzipped size per top-level package, as {package: (bytes without .pyc, .pyc bytes)}."""
    report: dict[str, tuple[int, int]] = {}
    for name, entries in _groups(layer / "python"):
        sizes = [_sizes(e) for e in entries]
        report[name] = (sum(s[0] for s in sizes), sum(s[1] for s in sizes))
    return report


def print_report(layer: Path) -> tuple[int, int]:
    report = size_report(layer)
    total_plain = sum(v[0] for v in report.values())
    total_pyc = sum(v[1] for v in report.values())
    print(f"\n{layer.name}: unzipped MiB      without .pyc   with .pyc")
    fold = len(report) > 8  # fold packages under 0.5 MiB into one line
    for name, (plain, pyc) in sorted(report.items(), key=lambda kv: -sum(kv[1])):
        if not fold or plain + pyc >= MIB // 2:
            print(f"  {name:<28} {plain / MIB:>12.1f} {(plain + pyc) / MIB:>11.1f}")
    small = [v for v in report.values() if fold and sum(v) < MIB // 2]
    if small:
        label = f"({len(small)} smaller)"
        plain, pyc = sum(v[0] for v in small), sum(v[1] for v in small)
        print(f"  {label:<28} {plain / MIB:>12.1f} {(plain + pyc) / MIB:>11.1f}")
    print(f"  {'TOTAL':<28} {total_plain / MIB:>12.1f} {(total_plain + total_pyc) / MIB:>11.1f}")
    return total_plain, total_pyc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--arch", choices=sorted(PLATFORMS), default="x86_64")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--only", choices=("loopml", *DEPS_LAYERS))
    parser.add_argument("--with-boto3", action="store_true", help="ship boto3 instead of the runtime's")
    parser.add_argument("--print-pins", action="store_true", help="print the pinned requirements and exit")
    args = parser.parse_args(argv)
    if args.print_pins:
        print("\n".join(pinned_requirements(args.arch, args.with_boto3)))
        return 0
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    python312 = find_python312()
    layers = []
    if args.only in (None, "loopml"):
        layers.append(build_loopml(out, python312))
    for kind in DEPS_LAYERS:
        if args.only in (None, kind):
            layers.append(build_deps(out, python312, args.arch, args.with_boto3, kind))
    totals = {layer.name.split("-")[0]: print_report(layer) for layer in layers}
    failed = False
    for function, kinds in FUNCTION_LAYERS.items():
        if not all(k in totals for k in kinds):
            continue
        plain = sum(totals[k][0] for k in kinds)
        grand = sum(sum(totals[k]) for k in kinds)
        print(
            f"\n{function}: {' + '.join(kinds)}: {plain / MIB:.1f} MiB without .pyc, {grand / MIB:.1f} MiB with "
            f".pyc (Lambda limit {HARD_LIMIT_MIB}, function code included)"
        )
        failed |= grand > HARD_LIMIT_MIB * MIB
    if failed:
        print(json.dumps({"error": "layers exceed Lambda's unzipped limit"}), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
