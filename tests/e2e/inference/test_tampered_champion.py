"""A tampered champion: the stack still starts, the API says why, and the model is rolled back.

Drill: v2 is trained and promoted with ``loopml train --local --champion`` (what the CLI says is what
is served), its artifact is overwritten while the stack is stopped, and ``loopml local up`` starts
again. /health and /predict answer 503 with ``Retry-After`` and the reason, ``loopml promote`` refuses
the tampered version, and ``loopml rollback`` serves v1 again without a restart.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from loopml.data import write_csv
from loopml.topology import physical_name
from loopml_dev import datasets
from loopml_dev.local.persistence import encode_key
from loopml_dev.local.stack import free_port
from loopml_dev.local.up import example_instance, http_json
from tests.e2e.conftest import CliStack

pytestmark = pytest.mark.e2e
LOOPML = str(Path(sys.executable).with_name("loopml"))


def _loopml(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LOOPML, *args], capture_output=True, text=True, timeout=180, check=False)


@pytest.mark.timeout(600)  # two stacks and eight CLI commands: minutes when the CI machine is loaded
def test_a_tampered_champion_does_not_stop_the_stack_and_can_be_rolled_back(tmp_path: Path) -> None:
    state, api_port, aws_port = tmp_path / "state", free_port(), free_port()
    argv = [LOOPML, "local", "up", "--state-dir", str(state), "--api-port", str(api_port), "--aws-port", str(aws_port)]
    api = f"http://127.0.0.1:{api_port}"
    data = tmp_path / "loans.csv"
    data.write_bytes(write_csv(datasets.loan_default(1200, seed=5)))

    first = CliStack(argv, api)
    try:
        trained = _loopml(
            "train", "--data", str(data), "--target", "default", "--local", "--champion", "--aws-port", str(aws_port)
        )
        assert trained.returncode == 0, trained.stderr
        assert "default now serves v2 (was v1)" in trained.stdout
        status, answer = http_json("POST", f"{api}/predict", {"instance": example_instance()})
        assert status == 200 and answer["model_version"] == 2, answer  # served at once, no restart
        while_v2 = datetime.now(UTC).isoformat()
        # Another contract under the same name is refused, naming the difference, before anything trains.
        columns = datasets.loan_default(300, seed=6)
        columns.pop("region")
        other = tmp_path / "no-region.csv"
        other.write_bytes(write_csv(columns))
        refused = _loopml("train", "--data", str(other), "--target", "default", "--local", "--aws-port", str(aws_port))
        assert refused.returncode == 2 and "features no longer taken: ['region']" in refused.stderr, refused
        assert "--new-schema" in refused.stderr and "training default" not in refused.stdout
    finally:
        first.stop()

    artifact = state / "s3" / physical_name("local", "models") / encode_key("models/default/v2/model.onnx")
    artifact.write_bytes(b"not the registered bytes")

    second = CliStack(argv, api)
    try:
        assert "WARNING: model default cannot be served" in second.text
        for method, path, body in (("GET", "/health", None), ("POST", "/predict", {"instance": example_instance()})):
            status, answer = http_json(method, api + path, body)
            assert status == 503, (path, answer)
            assert "does not match the registered" in str(answer), answer
        refused = _loopml("promote", "default", "2", "--aws-port", str(aws_port))
        assert refused.returncode == 2 and "is refused: its compiled form's SHA-256" in refused.stderr, refused
        rolled = _loopml("rollback", "default", "--aws-port", str(aws_port))
        assert rolled.returncode == 0, rolled.stderr
        assert "default rolled back to v1 (was v2)" in rolled.stdout
        status, answer = http_json("POST", f"{api}/predict", {"instance": example_instance()})
        assert status == 200 and answer["model_version"] == 1 and answer["degraded"] is False, answer
        status, health = http_json("GET", f"{api}/health")
        assert status == 200 and health["model_version"] == 1

        # The lifecycle CLI tells the same story, from the registry's deployment history.
        port = ("--aws-port", str(aws_port))
        at = _loopml("models", "history", "default", "--at", while_v2, *port)
        assert at.returncode == 0 and f"default at {while_v2}: v2, champion since" in at.stdout, at
        now = _loopml("models", "history", "default", "--at", datetime.now(UTC).isoformat(), *port)
        assert ": v1, champion since" in now.stdout and "loopml rollback" in now.stdout, now
        listed = _loopml("models", "list", *port)
        assert listed.returncode == 0, listed.stderr
        row = next(line for line in listed.stdout.splitlines() if line.startswith("default "))
        assert row.split()[1:5] == ["2", "v1", "v2", "v1"], listed.stdout  # versions, champion, latest, served
        shown = _loopml("models", "show", "default", "--version", "2", *port)
        assert "TAMPERED" in shown.stdout and "default v2" in shown.stdout, shown
        assert "verified" in _loopml("models", "show", "default", *port).stdout
    finally:
        second.stop()
