"""The HMAC key for subject ids, shared by ``/predict`` and the feedback function.

Resolved on first use, in order:

1. ``SUBJECT_KEY``: the key itself (tests, explicit overrides);
2. on the local stack (``LOOPML_LOCAL_RUNTIME``): ``local/subject-key`` in the models bucket, generated
   on first use with a conditional write (so inference and feedback agree on it) and kept across
   restarts by the stack's S3 snapshots;
3. in the cloud: the SSM SecureString named by ``SUBJECT_KEY_PARAMETER``, default
   ``/<models bucket>/subject-key`` (create it once with ``aws ssm put-parameter --type SecureString``).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable

from botocore.exceptions import BotoCoreError, ClientError

from loopml.adapters.aws import client, error_code, translate
from loopml.adapters.s3 import S3ObjectStore
from loopml.errors import ConfigurationError, NotFound, VersionConflict
from loopml.feedback.privacy import LazyHasher

LOCAL_KEY = "local/subject-key"


def subject_hasher(
    model_bucket: str, subject_key: str | None, parameter: str | None, local: bool
) -> Callable[[str], str]:
    return LazyHasher(subject_key_loader(model_bucket, subject_key, parameter, local))


def subject_key_loader(
    model_bucket: str, subject_key: str | None, parameter: str | None, local: bool
) -> Callable[[], bytes]:
    def load() -> bytes:
        if subject_key:
            return subject_key.encode()
        if local:
            return _local_key(S3ObjectStore(client("s3"), model_bucket))
        name = parameter or f"/{model_bucket}/subject-key"
        try:
            value: str = client("ssm").get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
        except (ClientError, BotoCoreError) as exc:
            if error_code(exc) == "ParameterNotFound":
                raise ConfigurationError(
                    f"SSM parameter {name} does not exist; create it as a SecureString of 32+ random bytes"
                ) from None
            raise translate(exc, f"ssm {name}") from exc
        return value.encode()

    return load


def _local_key(store: S3ObjectStore) -> bytes:
    try:
        return store.get(LOCAL_KEY)
    except NotFound:
        pass
    with contextlib.suppress(VersionConflict):  # the other function created it first: use theirs
        store.put(LOCAL_KEY, secrets.token_hex(32).encode(), if_none_match=True)
    return store.get(LOCAL_KEY)
