"""The botocore session every adapter's client comes from, and its cold-start data loader."""

from __future__ import annotations

from typing import Any

import pytest


def test_botocores_models_read_by_orjson_are_the_ones_it_reads_itself() -> None:
    """Every file an S3 and an SQS client load (gzipped service models, endpoint rules, plain JSON)."""
    from botocore.loaders import JSONFileLoader, create_loader

    from loopml.adapters.botocore_data import OrjsonFileLoader

    loader = create_loader()
    read: list[str] = []
    stock, ours = JSONFileLoader(), OrjsonFileLoader()

    class Recording(JSONFileLoader):
        def load_file(self, file_path: str) -> Any:
            read.append(file_path)
            return super().load_file(file_path)

    loader.file_loader = Recording()
    for service in ("s3", "sqs"):
        loader.load_service_model(service, "service-2")
        loader.load_service_model(service, "endpoint-rule-set-1")
    loader.load_data("endpoints")
    assert len(read) >= 5
    for path in read:
        assert ours.exists(path) == stock.exists(path)
        assert ours.load_file(path) == stock.load_file(path), path
    assert ours.load_file(read[0] + "-none") is None and not ours.exists(read[0] + "-none")


def test_the_cold_start_loader_knows_every_service_botocore_knows_and_no_more_models() -> None:
    from botocore.loaders import create_loader

    from loopml.adapters.botocore_data import loader

    stock, ours = create_loader(), loader(None)
    assert ours.search_paths == stock.search_paths
    for kind in ("service-2", "endpoint-rule-set-1"):
        assert set(stock.list_available_services(kind)) <= set(ours.list_available_services(kind))
    assert ours.load_service_model("sqs", "service-2") == stock.load_service_model("sqs", "service-2")


def test_clients_share_one_session_and_restores_drop_both(aws_env: None) -> None:
    from botocore.exceptions import UnknownServiceError

    from loopml.adapters.aws import _session, clear_clients, client
    from loopml.adapters.botocore_data import ColdStartLoader

    s3, sqs = client("s3"), client("sqs")
    assert client("s3") is s3
    session = _session()
    assert isinstance(session.get_component("data_loader"), ColdStartLoader)
    assert sqs.meta.service_model.service_name == "sqs"
    with pytest.raises(UnknownServiceError):
        client("no-such-service")
    clear_clients()
    assert client("s3") is not s3 and _session() is not session
