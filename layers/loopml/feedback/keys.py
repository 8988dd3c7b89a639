"""The HMAC key for subject ids, shared by ``/predict`` and the feedback function.

Resolved on first use (a request carrying a ``subject_id``), so cold starts never pay for it:
``SUBJECT_KEY`` (the key itself: tests, explicit overrides) or else the Secrets Manager secret named by
``SUBJECT_KEY_SECRET_ARN``, which the topology declares: CDK generates it in the cloud, and the local
stack creates it in moto from a key kept in its state folder, so hashes stay stable across restarts.
"""

from __future__ import annotations

from collections.abc import Callable

from botocore.exceptions import BotoCoreError, ClientError

from loopml.adapters.aws import client, error_code, translate
from loopml.errors import ConfigurationError
from loopml.feedback.privacy import LazyHasher


def subject_hasher(subject_key: str | None, secret_arn: str | None) -> LazyHasher:
    return LazyHasher(subject_key_loader(subject_key, secret_arn))


def subject_key_loader(subject_key: str | None, secret_arn: str | None) -> Callable[[], bytes]:
    def load() -> bytes:
        if subject_key:
            return subject_key.encode()
        if not secret_arn:
            raise ConfigurationError("SUBJECT_KEY_SECRET_ARN is not set: subject ids cannot be hashed")
        try:
            value: str = client("secretsmanager").get_secret_value(SecretId=secret_arn)["SecretString"]
        except (ClientError, BotoCoreError) as exc:
            if error_code(exc) == "ResourceNotFoundException":
                raise ConfigurationError(f"secret {secret_arn} does not exist") from None
            raise translate(exc, f"secret {secret_arn}") from exc
        return value.encode()

    return load
