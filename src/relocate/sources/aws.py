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
from botocore.parsers import ResponseParserFactory, RestXMLParser
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
    stamp: datetime = parse_timestamp(value)
    return stamp


class _ListingXmlParser(RestXMLParser):
    """botocore's REST-XML parser with a quicker path for the entries of S3 listings.

    botocore parses each `<Contents>` entry generically (a tag -> node dict, then every
    member of the model looked up): ~70 us an entry, two thirds of listing 10,000 objects
    here. For the shapes in _FAST, scalar members (string, integer, timestamp, boolean)
    are converted straight from the child nodes; anything else (Owner, ChecksumAlgorithm,
    RestoreStatus) goes through botocore's own handlers, and a shape with XML attributes
    or a scalar tag seen twice takes the generic path whole. Same result, key for key
    (tests/test_s3data.py compares them).
    """

    _FAST = frozenset({"Object", "CommonPrefix", "ObjectVersion", "DeleteMarkerEntry"})
    _KINDS = {"string": "s", "integer": "i", "long": "i", "timestamp": "t", "boolean": "b"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plans: dict[int, tuple[Any, dict[str, tuple[str, str | None, Any]] | None]] = {}
        self._tags: dict[str, str] = {}

    def _node_tag(self, node: Any) -> str:
        """botocore's (the tag without its namespace: a regex substitution, six per listed
        object), remembered per tag: a listing has a dozen distinct tags."""
        tag = self._tags.get(node.tag)
        if tag is None:
            tag = self._tags[node.tag] = super()._node_tag(node)
        return tag

    def _plan(self, shape: Any) -> dict[str, tuple[str, str | None, Any]] | None:
        got = self._plans.get(id(shape))
        if got is not None and got[0] is shape:
            return got[1]
        members: dict[str, tuple[str, str | None, Any]] = {}
        plan: dict[str, tuple[str, str | None, Any]] | None = members
        for name, member in shape.members.items():
            ser = member.serialization
            if ser.get("xmlAttribute"):
                plan = None
                break
            if ser.get("location") in self.KNOWN_LOCATIONS or ser.get("eventheader"):
                continue
            members[self._member_key_name(member, name)] = (name, self._KINDS.get(member.type_name), member)
        self._plans[id(shape)] = (shape, plan)
        return plan

    def _handle_structure(self, shape: Any, node: Any) -> Any:
        if shape.name not in self._FAST or isinstance(node, list) or shape.metadata.get("exception"):
            return super()._handle_structure(shape, node)
        plan = self._plan(shape)
        if plan is None:
            return super()._handle_structure(shape, node)
        parsed: dict[str, Any] = {}
        others: dict[str, Any] = {}
        for child in node:
            tag = self._node_tag(child)
            entry = plan.get(tag)
            if entry is None:
                continue  # not in the model: botocore ignores it too
            name, kind, member = entry
            if kind is None:
                prev = others.get(tag)  # aggregated as botocore's _build_name_to_xml_node does
                others[tag] = child if prev is None else (prev + [child] if isinstance(prev, list) else [prev, child])
                continue
            if name in parsed:
                return super()._handle_structure(shape, node)
            text = child.text
            if text is None:
                text = ""
            if kind == "s":
                parsed[name] = text
            elif kind == "i":
                parsed[name] = int(text)
            elif kind == "t":
                parsed[name] = self._timestamp_parser(text)
            else:
                parsed[name] = text == "true"
        for tag, nodes in others.items():
            name, _, member = plan[tag]
            parsed[name] = self._parse_shape(member, nodes)
        return parsed


class _ParserFactory(ResponseParserFactory):
    def create_parser(self, protocol_name: str) -> Any:
        if protocol_name == "rest-xml":
            return _ListingXmlParser(**self._defaults)
        return super().create_parser(protocol_name)


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
        parsers = _ParserFactory()
        parsers.set_parser_defaults(timestamp_parser=_timestamp)
        self.session._session.register_component("response_parser_factory", parsers)
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

    def endpoint_in(self, service: str, region: str) -> str:
        """Where boto3 sends `service` requests for `region` (relocate.yaml's endpoint_url
        when set); the client made to resolve it is never called."""
        url: str = self.session.client(service, region_name=region, endpoint_url=self.spec.endpoint_url,
                                       config=self._config).meta.endpoint_url
        return url


def bucket_region(s3: Any, bucket: str) -> str | None:
    """The region the bucket lives in, as S3 says (`x-amz-bucket-region` on HeadBucket,
    also sent with a redirect or a refusal); None when it says nothing."""
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
