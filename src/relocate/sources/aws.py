"""botocore clients for the source, guarded so relocate can never change the source.

Every client is made here, with one botocore hook that rejects any operation that
is not a read. That is the single place the "source is read-only" promise is kept.
"""

from __future__ import annotations

import re
import threading
from typing import Any

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


def is_read_operation(name: str) -> bool:
    return name in _READ_EXTRA or bool(_READ_OPS.match(name))


class Aws:
    """A session and a cache of guarded clients for one source account/region."""

    def __init__(self, spec: AwsSpec, *, max_pool: int = 32, retry_mode: str = "standard") -> None:
        self.spec = spec
        self._max_pool, self._retry_mode = max_pool, retry_mode
        self._session: Any = None
        self._config: Any = None
        self._making = threading.Lock()
        self._clients: dict[str, Any] = {}

    @property
    def session(self) -> Any:
        """The botocore session, made (and botocore imported: ~0.2 s of CPU) on first use: a
        move of host files alone never reads AWS and never pays for it (issue 18)."""
        with self._making:
            if self._session is None:
                self._session, self._config = self._make_session()
            return self._session

    @property
    def region_name(self) -> str | None:
        """The region relocate.yaml, the environment or the profile names (botocore's order)."""
        region: str | None = self.session.get_config_variable("region")
        return region

    def _make_session(self) -> tuple[Any, Any]:
        # botocore's own session, not boto3's: boto3 adds resources and the transfer
        # manager, which relocate never uses, and importing it cost ~0.07 s more, on the
        # path from start-up to the first listing (issue 18).
        import botocore.exceptions
        import botocore.session
        from botocore.config import Config as BotoConfig

        from relocate.sources.awsparse import parser_factory, quicker_listings
        from relocate.sources.botomodels import model_loader

        session = botocore.session.Session(profile=self.spec.profile)
        try:
            session.get_scoped_config()  # an unknown profile fails here, as boto3.Session(profile_name=...) did
        except botocore.exceptions.ProfileNotFound as exc:
            raise SourceError(f"source.aws.profile: {exc}") from None
        if self.spec.region:
            session.set_config_variable("region", self.spec.region)
        session.register_component("data_loader", model_loader(session.get_config_variable("data_path")))
        session.register_component("response_parser_factory", parser_factory())
        quicker_listings(session.get_component("event_emitter"))  # every client made from here on
        # Standard retry mode handles throttling/5xx with backoff; the pool grows with
        # our concurrency (botocore's default of 10 would serialise a thread pool).
        config = BotoConfig(
            # "adaptive" (discover) also rate-limits on the client: a burst of List calls
            # across every service and region would otherwise trip account throttles.
            retries={"mode": self._retry_mode, "max_attempts": 6},
            max_pool_connections=self._max_pool,
            connect_timeout=10,
            read_timeout=60,
            s3={"addressing_style": "path"} if self.spec.endpoint_url else None,
        )
        return session, config

    def client(self, service: str) -> Any:
        if service not in self._clients:
            session = self.session
            client = session.create_client(service, endpoint_url=self.spec.endpoint_url, config=self._config)
            client.meta.events.register("before-call", _refuse_writes)
            self._clients[service] = client
        return self._clients[service]

    def endpoint_in(self, service: str, region: str) -> str:
        """Where botocore sends `service` requests for `region` (relocate.yaml's endpoint_url
        when set); the client made to resolve it is never called."""
        session = self.session
        url: str = session.create_client(service, region_name=region, endpoint_url=self.spec.endpoint_url,
                                         config=self._config).meta.endpoint_url
        return url


def bucket_region(s3: Any, bucket: str) -> str | None:
    """The region the bucket lives in, as S3 says (`x-amz-bucket-region` on HeadBucket,
    also sent with a redirect or a refusal); None when it says nothing."""
    import botocore.exceptions

    try:
        headers = s3.head_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPHeaders"]
    except botocore.exceptions.ClientError as exc:
        headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    except Exception:  # unreachable and the like: the reads say so, with their own retries
        return None
    return headers.get("x-amz-bucket-region") or None


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
    import botocore.exceptions  # loaded already when a botocore exception exists

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
        # botocore names the whole request URL, query and all: a listing's start-after can
        # be kilobytes of percent-encoding. The endpoint and path say where.
        where = re.sub(r"(https?://[^\s\"?]*)\?[^\s\"]*", r"\1", str(exc))
        return TransientError(f"{what}: cannot reach the source endpoint ({where})", hint="running again resumes")
    if isinstance(exc, botocore.exceptions.BotoCoreError):
        return SourceError(f"{what}: {exc}")
    return RelocateError(f"{what}: {type(exc).__name__}: {exc}")
