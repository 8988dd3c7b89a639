from __future__ import annotations

import json

import pytest

from loopml_dev.cli import main


def test_generate_then_train_prints_metrics(tmp_path, capsys):
    data = tmp_path / "loans.csv"
    assert main(["generate", "--rows", "600", "--out", str(data), "--seed", "3"]) == 0
    assert main(["train", "--data", str(data), "--target", "default", "--param", "regularization_c=0.5"]) == 0
    out = capsys.readouterr().out
    assert "training default (classification, logistic_regression) on" in out and "600 rows, 13 features" in out
    assert "roc_auc" in out and "not registered" in out


def test_train_jsonl_with_config_and_tree_model(tmp_path, capsys):
    data = tmp_path / "loans.jsonl"
    main(["generate", "--rows", "400", "--out", str(data)])
    config = tmp_path / "spec.json"
    config.write_text(json.dumps({"features": {"gender": {"sensitive": True}}, "drop": ["region"]}))
    code = main(
        ["train", "--data", str(data), "--target", "default", "--config", str(config), "--model-type", "random_forest"]
    )
    assert code == 0
    assert "12 features" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["train", "--data", "nope.csv", "--target", "y"], "nope.csv: no such file"),
        (["train", "--data", "{data}", "--target", "missing_col"], "target column 'missing_col' not found"),
        (["train", "--data", "{data}", "--target", "default", "--param", "oops"], "expected KEY=VALUE"),
        (["train", "--data", "{data}", "--target", "default", "--param", "max_iter=1"], "max_iter"),
        (["train", "--data", "{data}", "--target", "default", "--model", "Bad Name"], "model name 'Bad Name'"),
        (["train", "--data", "{data}", "--target", "default", "--config", "{missing}"], "No such file"),
        (["train", "--data", "{data}", "--target", "default", "--local", "--aws-port", "1"], "no local stack answers"),
        (["generate", "--rows", "0", "--out", "{tmp}/x.csv"], "--rows must be at least 1"),
        (["generate", "--out", "{tmp}/x.xlsx"], "use a .csv or .jsonl"),
        (["bench", "drift", "--evidently-python", "/nope/python"], "no such file"),
    ],
)
def test_user_mistakes_get_one_clear_line_and_exit_2(tmp_path, capsys, argv, needle):
    data = tmp_path / "loans.csv"
    main(["generate", "--rows", "200", "--out", str(data)])
    capsys.readouterr()
    argv = [a.format(data=data, tmp=tmp_path, missing=tmp_path / "none.json") for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err
    assert "Traceback" not in err


def test_malformed_files_are_named(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,default\n1,2,0\n3,4\n")
    assert main(["train", "--data", str(bad), "--target", "default"]) == 2
    assert "line 3 has 2 fields, header has 3" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"a": 1, "default": 0}\n[1, 2]\n')
    assert main(["train", "--data", str(bad), "--target", "default"]) == 2
    assert "line 2 is not a JSON object" in capsys.readouterr().err
    bad = tmp_path / "bad.xlsx"
    bad.write_text("x")
    assert main(["train", "--data", str(bad), "--target", "default"]) == 2
    assert "unsupported file type" in capsys.readouterr().err


class _FakeExecution:
    """Step Functions as `loopml retrain --wait` sees it: states entered one call at a time."""

    def __init__(self, events: list[dict], final: dict) -> None:
        self._events, self._final, self._calls = events, final, 0

    def get_execution_history(self, executionArn: str, maxResults: int) -> dict:
        self._calls += 1
        return {"events": self._events[: self._calls * 2]}

    def describe_execution(self, executionArn: str) -> dict:
        return self._final if self._calls * 2 >= len(self._events) else {"status": "RUNNING"}


def test_retrain_wait_prints_each_state_and_the_failing_steps_own_error(capsys, monkeypatch):
    from loopml_dev import cli

    monkeypatch.setattr(cli.time, "sleep", lambda s: None)
    cause = '{"errorMessage": "the recent holdout (69 rows) has too few rows", "errorType": "InsufficientData"}'
    events = [
        {"id": 1, "stateEnteredEventDetails": {"name": "Start"}},
        {"id": 2, "stateEnteredEventDetails": {"name": "Prepare"}},
        {"id": 3, "lambdaFunctionFailedEventDetails": {"error": "InsufficientData", "cause": cause}},
        {"id": 4, "stateEnteredEventDetails": {"name": "CleanUp"}},
    ]
    final = {"status": "FAILED", "error": "RetrainingFailed", "cause": "A step failed"}
    assert cli._follow(_FakeExecution(events, final), "arn", timeout_s=60) == 1
    out, err = capsys.readouterr()
    assert [line.strip() for line in out.splitlines()] == ["Start", "Prepare", "CleanUp"]
    assert "the failing step said: InsufficientData: the recent holdout (69 rows) has too few rows" in err


def test_retrain_wait_gives_up_after_its_timeout(capsys, monkeypatch):
    from loopml_dev import cli

    monkeypatch.setattr(cli.time, "sleep", lambda s: None)
    never = _FakeExecution([{"id": 1, "stateEnteredEventDetails": {"name": "Bake"}}] * 0, {"status": "RUNNING"})
    never.describe_execution = lambda executionArn: {"status": "RUNNING"}  # type: ignore[method-assign]
    assert cli._follow(never, "arn", timeout_s=0) == 1
    assert "still running after 0 minutes" in capsys.readouterr().err
