"""boto3 clients for the source, guarded so relocate can never change the source.

Every client is made here, with one botocore hook that rejects any operation that
is not a read. That is the single place the "source is read-only" promise is kept.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import boto3
import botocore.exceptions
from botocore.config import Config as BotoConfig
from botocore.utils import parse_timestamp

from relocate.config import AwsSpec
from relocate.errors import RelocateError, SafetyError, SourceError, TransientError

# Operation names that only read. Anything else (Put*, Delete*, Create*, Update*,
# Copy*, Restore*, ...) is refused before a request is even signed.
_READ_OPS = re.compile(r"^(List|Get|Describe|Head|Select|Lookup|BatchGet|Search|Test|Validate)[A-Z]")
# Reads named oddly enough to need listing by hand.
_READ_EXTRA = {"AssumeRole", "GetCallerIdentity", "DecodeAuthorizationMessage"}


class ReadOnlyViolation(SafetyError):
    pass


def _refuse_writes(model: Any = None, **_: Any) -> None:
    name = model.name if model is not None else "?"
    if name in _READ_EXTRA or _READ_OPS.match(name):
        return
    raise ReadOnlyViolation(
        f"refused to call {model.service_model.service_name}:{name}: relocate never changes the source"
    )


def _timestamp(value: Any) -> datetime:
    """botocore's timestamp parser, with a fast path for the ISO 8601 form every S3
    listing entry carries: botocore's own goes through dateutil (~40 us each), half the
    time of listing 10,000 objects here. Anything else, or a time without a zone,
    goes to botocore's parser as before."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is not None:
                return parsed
    return parse_timestamp(value)


def is_read_operation(name: str) -> bool:
    return name in _READ_EXTRA or bool(_READ_OPS.match(name))


class Aws:
    """A session and a cache of guarded clients for one source account/region."""

    def __init__(self, spec: AwsSpec, *, max_pool: int = 32, retry_mode: str = "standard") -> None:
        self.spec = spec
        try:
            self.session = boto3.Session(profile_name=spec.profile, region_name=spec.region)
        except botocore.exceptions.ProfileNotFound as exc:
            raise SourceError(f"source.aws.profile: {exc}") from None
        self.session._session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=_timestamp)
        # Standard retry mode handles throttling/5xx with backoff; the pool grows with
        # our concurrency (botocore's default of 10 would serialise a thread pool).
        self._config = BotoConfig(
            # "adaptive" (discover) also rate-limits on the client: a burst of List calls
            # across every service and region would otherwise trip account throttles.
            retries={"mode": retry_mode, "max_attempts": 6},
            max_pool_connections=max_pool,
            connect_timeout=10,
            read_timeout=60,
            s3={"addressing_style": "path"} if spec.endpoint_url else None,
        )
        self._clients: dict[str, Any] = {}

    def client(self, service: str) -> Any:
        if service not in self._clients:
            client = self.session.client(service, endpoint_url=self.spec.endpoint_url, config=self._config)
            client.meta.events.register("before-call", _refuse_writes)
            self._clients[service] = client
        return self._clients[service]


# Error codes that mean "fix the input", versus "try again later".
_MISSING = {"NoSuchBucket", "ParameterNotFound", "ResourceNotFoundException", "NoSuchKey", "DBInstanceNotFound",
            "NoSuchHostedZone", "404", "NotFound"}
_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "InvalidAccessKeyId",
           "SignatureDoesNotMatch", "UnrecognizedClientException", "AuthorizationError", "403", "Forbidden"}
_TRANSIENT = {"ExpiredToken", "ExpiredTokenException", "RequestExpired", "Throttling", "ThrottlingException",
              "SlowDown", "RequestTimeout", "ServiceUnavailable", "InternalError", "500", "503"}


def translate(exc: BaseException, what: str) -> RelocateError:
    """Turn a botocore exception into relocate's error tree, naming what we were reading."""
    if isinstance(exc, RelocateError):
        return exc
    if isinstance(exc, botocore.exceptions.ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        msg = err.get("Message") or code
        if code in _MISSING:
            return SourceError(f"{what}: not found on the source ({code})", hint="check the name in relocate.yaml")
        if code in _DENIED:
            return SourceError(f"{what}: access denied ({code}: {msg})", hint="grant read access to these credentials")
        if code in _TRANSIENT:
            return TransientError(f"{what}: {code}: {msg}", hint="running again resumes")
        return SourceError(f"{what}: {code}: {msg}")
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return SourceError(f"{what}: no AWS credentials found", hint="set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
    if isinstance(exc, (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectionError,
                        botocore.exceptions.ReadTimeoutError, botocore.exceptions.ConnectTimeoutError)):
        return TransientError(f"{what}: cannot reach the source endpoint ({exc})", hint="running again resumes")
    if isinstance(exc, botocore.exceptions.BotoCoreError):
        return SourceError(f"{what}: {exc}")
    return RelocateError(f"{what}: {type(exc).__name__}: {exc}")
