from __future__ import annotations

import pytest

from loopml.errors import ConfigurationError, TransientError
from loopml.retrain.errors import RetrainingInProgress
from loopml.retrain.faults import FaultInjector, parse_faults
from loopml_dev.memory import MemoryObjectStore


def test_fails_the_given_number_of_times_per_run() -> None:
    injector = FaultInjector(MemoryObjectStore(), "train:TransientError:2, deploy:RetrainingInProgress:1")
    for _ in range(2):
        with pytest.raises(TransientError, match="injected"):
            injector.maybe_fail("train", "m", "run-1")
    injector.maybe_fail("train", "m", "run-1")
    injector.maybe_fail("prepare", "m", "run-1")
    with pytest.raises(RetrainingInProgress):
        injector.maybe_fail("deploy", "m", "run-1")
    with pytest.raises(TransientError):
        injector.maybe_fail("train", "m", "run-2")


@pytest.mark.parametrize("spec", ["train", "train:TransientError", "train:NoSuchError:1", "train:TransientError:x"])
def test_bad_spec_is_a_configuration_error(spec: str) -> None:
    with pytest.raises(ConfigurationError, match="FAULT_INJECTION"):
        parse_faults(spec)
