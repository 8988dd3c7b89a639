"""`make up` exactly as a user runs it (repo root, default state dir and ports): its summary, the README's
curl lines and shell blocks, the admin token, Ctrl-C and a second `make up`."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
from collections.abc import Iterator

import pytest

from tests.conftest import ROOT
from tests.e2e.conftest import CliStack, port_is_free, wait_for

pytestmark = pytest.mark.e2e
API = "http://127.0.0.1:3000"  # the README's address: `make up` serves on its defaults
STATE = ROOT / ".loopml"
STOPPED = (
    0,
    -signal.SIGINT,
)  # make re-raises the Ctrl-C it got, after loopml has stopped cleanly  # the default state dir, as `make up` uses it from the repo root


def make_up() -> CliStack:
    """``make up`` exactly as the README prints it: from the repo root, default state dir and ports."""

    def busy() -> list[int]:
        return [p for p in (3000, 4566) if not port_is_free(p)]

    wait_for(lambda: not busy(), 30)  # the module's previous `make up` may still be letting go of them
    assert not busy(), f"ports {busy()} are in use: stop the running `make up` before running this test"
    return CliStack(["make", "up"], API)


@pytest.fixture(scope="module")
def fresh_state() -> Iterator[None]:
    """A fresh clone has no ``.loopml``: a developer's own state is set aside and put back afterwards."""
    aside = ROOT / f".loopml.before-readme-test-{os.getpid()}"
    if STATE.exists():
        STATE.rename(aside)
    try:
        yield
    finally:
        shutil.rmtree(STATE, ignore_errors=True)
        if aside.exists():
            aside.rename(STATE)


@pytest.fixture(scope="module")
def up(fresh_state: None) -> Iterator[CliStack]:
    stack = make_up()
    try:
        yield stack
    finally:
        stack.stop()


def readme_curls() -> list[str]:
    lines = (ROOT / "README.md").read_text().splitlines()
    return [line.strip() for line in lines if line.strip().startswith("curl ") and "$" not in line]


def readme_shell_blocks() -> list[str]:
    """The README's ``sh`` blocks that call the API (multi-line ones use shell variables)."""
    blocks = re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    return [b for b in blocks if "curl " in b and "http://127.0.0.1:3000" in b]


def loopml(*args: str) -> str:
    """The ``loopml`` command as a user runs it from the repo root; its output."""
    done = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "loopml"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=ROOT,
    )
    return done.stdout


def curl(command: str, api: str) -> tuple[int, str]:
    argv = shlex.split(command.replace("http://127.0.0.1:3000", api))
    done = subprocess.run([*argv, "-w", "\n%{http_code}"], capture_output=True, text=True, timeout=60, check=False)
    body, _, status = done.stdout.rpartition("\n")
    return int(status), body


def test_summary_says_what_runs_and_how_to_call_it(up: CliStack) -> None:
    text = up.text
    assert "registered default v1 as champion" in text
    assert f"API            {up.api}" in text
    assert re.search(r"function\s+inference:live -> v1", text)
    assert "curl -s -X POST" in text


def test_every_readme_curl_works_as_printed(up: CliStack) -> None:
    commands = readme_curls()
    assert len(commands) >= 5
    for command in commands:
        status, body = curl(command, up.api)
        assert status == 200, (command, body)
        answer = json.loads(body)
        if "/predict" in command:
            sent = json.loads(shlex.split(command)[-1])
            assert len(answer["predictions"]) == len(sent.get("instances", [1]))
            assert answer["model_version"] == 1
            if "explain=true" in command:
                assert set(answer["predictions"][0]["explanation"]) == set(sent["instance"])


def test_every_readme_shell_block_runs_as_printed(up: CliStack) -> None:
    blocks = readme_shell_blocks()
    assert len(blocks) >= 2
    for block in blocks:
        script = 'set -euo pipefail\ncurl() { command curl --fail-with-body "$@"; echo; }\n' + block.replace(
            "http://127.0.0.1:3000", up.api
        )
        done = subprocess.run(
            ["bash", "-c", script], capture_output=True, text=True, timeout=120, check=False, cwd=ROOT
        )
        assert done.returncode == 0, (block, done.stdout[-2000:], done.stderr[-2000:])


def test_summary_curl_lines_work_too(up: CliStack) -> None:
    text = up.text.replace(" \\\n       -d", " -d")
    commands = [line.strip() for line in text.splitlines() if line.strip().startswith("curl ")]
    assert commands
    for command in commands:
        status, body = curl(command, up.api)
        assert status == 200, (command, body)


def test_malformed_requests_over_http_name_the_problem(up: CliStack) -> None:
    status, body = curl(f"curl -s -X POST {up.api}/predict -H 'content-type: application/json' -d '{{oops'", up.api)
    assert status == 400 and "not valid JSON" in body
    status, body = curl(
        f'curl -s -X POST {up.api}/predict -H \'content-type: application/json\' -d \'{{"instance": {{"age": "x"}}}}\'',
        up.api,
    )
    assert status == 422
    detail = json.loads(body)["detail"]
    assert {"loc": ["body", "instance", "age"], "msg": "expected a number", "type": "float_type"} in detail
    assert any(d["loc"][-1] == "credit_score" and d["type"] == "missing" for d in detail)
    status, body = curl(f"curl -s {up.api}/nope", up.api)
    assert status == 403


def test_admin_routes_need_the_printed_token(up: CliStack) -> None:
    token = (STATE / "secrets" / "admin-token").read_text().strip()
    assert f"admin token    {token}" in up.text
    status, body = curl(f"curl -s -X DELETE {up.api}/subjects/nobody", up.api)
    assert status == 403 and json.loads(body) == {"message": "Missing Authentication Token"}
    status, body = curl(f"curl -s -X DELETE {up.api}/subjects/nobody -H 'x-loopml-admin-token: {token}'", up.api)
    assert status == 200, body


def test_a_bounded_fuzz_run_finds_no_5xx_and_no_document_violation(up: CliStack) -> None:
    """`make fuzz` runs `loopml fuzz` (10,000 requests); the suite sends fewer through the same command."""
    report = ROOT / "build" / "fuzz-suite.json"
    done = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "loopml"), "fuzz", "--requests", "700", "--report", str(report)],
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    summary = json.loads(report.read_text())
    assert summary["requests"] >= 700 and summary["server_errors"] == 0 and summary["failures"] == {}
    documented = {
        (m.upper(), p)
        for p, item in json.loads(curl(f"curl -s {up.api}/openapi.json", up.api)[1])["paths"].items()
        for m in item
    }
    fuzzed = {tuple(label.split(" ")[:2]) for label in summary["by_operation"]}
    assert fuzzed == documented - {("GET", "/openapi.json")}  # schemathesis leaves out the route it loads from


def test_the_terminal_shows_one_line_per_request_and_loopml_logs_the_rest(up: CliStack) -> None:
    """Function output (JSON logs, EMF metric documents) goes to each function's log file, not the terminal."""
    evaluate = (
        f"curl -s -X POST {up.api}/drift/evaluate -H 'content-type: application/json' -d '{{\"model\": \"default\"}}'"
    )
    status, body = curl(evaluate, up.api)
    assert status == 200, body
    text = up.text
    assert re.search(r"\[api\] POST /predict 200 [0-9.]+ ms inference:\d+ model v1", text), text[-3000:]
    assert '"_aws"' not in text and '"level":' not in text, "raw function output reached the terminal"
    shown = loopml("logs", "inference")
    assert "START RequestId:" in shown and "REPORT RequestId:" in shown and "Billed Duration" in shown
    drift = loopml("logs", "drift", "--metrics", "--since", "1h")
    assert "METRIC" in drift and "DriftRows=" in drift


def readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _no_retraining_in_flight() -> None:
    """A retraining started by an earlier README block (an upload) bakes its canary for minutes: stopped here,
    as a user stops it in the console, and cleaned up by the stack before a new champion is served."""
    import boto3

    aws = {"endpoint_url": "http://127.0.0.1:4566", "region_name": "us-east-1", "aws_access_key_id": "local",
           "aws_secret_access_key": "local"}  # fmt: skip
    sfn, lam = boto3.client("stepfunctions", **aws), boto3.client("lambda", **aws)
    for machine in sfn.list_state_machines()["stateMachines"]:
        for run in sfn.list_executions(stateMachineArn=machine["stateMachineArn"], statusFilter="RUNNING")[
            "executions"
        ]:
            sfn.stop_execution(executionArn=run["executionArn"], cause="README test: a new champion is registered")
    inference = next(
        f["FunctionName"] for f in lam.list_functions()["Functions"] if f["FunctionName"].endswith("-inference")
    )

    def clean() -> bool:
        return (
            not lam.get_alias(FunctionName=inference, Name="live")
            .get("RoutingConfig", {})
            .get("AdditionalVersionWeights")
        )

    wait_for(clean, 60, "the stopped run's canary weight removed")


def test_bring_your_own_model_runs_as_printed(up: CliStack) -> None:
    """The README's notebook model: fitted, registered into `make up` as the champion, served; then the
    recipe is served again (`loopml rollback default`, as the README says) for the tests after this one."""
    (block,) = re.findall(r"```sh\n(.*?)```", readme_section("Bring your own model"), flags=re.S)
    _no_retraining_in_flight()
    done = subprocess.run(["bash", "-c", "set -euo pipefail\n" + block], capture_output=True, text=True,
                          timeout=300, check=False, cwd=ROOT)  # fmt: skip
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    assert "registering default: Pipeline(features=ColumnTransformer, gbm=GradientBoostingClassifier)" in done.stdout
    served = re.search(r"default now serves v(\d+) \(was v(\d+)\)", done.stdout)
    assert served, done.stdout
    new, old = served.groups()
    try:
        for command in readme_curls():
            if "/predict" not in command:
                continue
            status, body = curl(command, up.api)
            assert status == 200, (command, body)
            answer = json.loads(body)
            assert answer["model_version"] == int(new)
            assert all(0.5 <= p["confidence"] <= 1 for p in answer["predictions"]), answer
            if "explain=true" in command:  # occlusion, on the user's features
                sent = json.loads(shlex.split(command)[-1])["instance"]
                assert set(answer["predictions"][0]["explanation"]) == set(sent)
        shown = loopml("models", "show", "default", "--version", new)
        assert "user_estimator" in shown and "GradientBoostingClassifier" in shown, shown
    finally:
        rolled = loopml("rollback", "default")
        assert f"default rolled back to v{old} (was v{new})" in rolled, rolled


def test_ctrl_c_saves_state_and_the_next_make_up_serves_the_readme_again(up: CliStack) -> None:
    assert up.stop() in STOPPED
    assert "stopping (state saved)" in up.text and "local stack stopped" in up.text
    again = make_up()
    try:
        assert "model default v1 found in the persisted registry" in again.text
        assert "training the first model" not in again.text
        test_every_readme_curl_works_as_printed(again)
        test_every_readme_shell_block_runs_as_printed(again)
    finally:
        assert again.stop() in STOPPED
