"""The boto3 session every adapter's client comes from."""

from __future__ import annotations

from typing import Any


def test_botocores_models_read_by_orjson_are_the_ones_it_reads_itself() -> None:
    """Every file an S3 and an SQS client load (gzipped service models, endpoint rules, plain JSON)."""
    from botocore.loaders import JSONFileLoader, create_loader

    from loopml.adapters.aws import OrjsonFileLoader

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


def test_clients_share_one_session_with_the_orjson_loader_and_restores_drop_both(aws_env: None) -> None:
    from loopml.adapters.aws import OrjsonFileLoader, _session, clear_clients, client

    s3, sqs = client("s3"), client("sqs")
    assert client("s3") is s3
    session = _session()
    assert isinstance(session.get_component("data_loader").file_loader, OrjsonFileLoader)
    assert sqs.meta.service_model.service_name == "sqs"
    clear_clients()
    assert client("s3") is not s3 and _session() is not session
