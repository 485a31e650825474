"""AWS access and stack discovery: one boto3 session, its clients, and the chosen uploader's resources.

A command names a stack (``--stack``, ``$KIE_UPLOADER_STACK``, else ``KieUploader``) and, when the stack has
several uploaders, one of them (``--uploader``). :class:`Aws` finds its resources from the construct's
discovery record among the stack's outputs (:class:`StackResources`, :mod:`kie_uploader.discovery`) and
what it watches from its function's ``WATCHED_OBJECTS`` (:class:`Watching`, the function's own rules), each
read once, on first use. Every client uses the standard credential chain; ``AWS_ENDPOINT_URL`` points them
at a local stack instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from botocore.config import Config
from botocore.exceptions import ClientError

from kie_uploader import discovery, live
from kie_uploader.aws_errors import endpoint_problem
from kie_uploader.cli import console
from kie_uploader.cli.args import DEFAULT_STACK, S3Uri
from kie_uploader.cli.errors import CliError
from kie_uploader.function import watch

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_stepfunctions import SFNClient

C = TypeVar("C")


@dataclass(frozen=True)
class StackResources:
    """What the CLI needs of the chosen uploader of the stack (:mod:`kie_uploader.discovery`)."""

    stack_name: str
    bucket_names: tuple[str, ...]
    queue_url: str
    dead_letter_queue_url: str
    table_name: str
    #: The uploader's resources under the names of the older stacks' outputs (``SecretArn``, ...).
    outputs: dict[str, str] = field(default_factory=dict)
    #: The uploader's name (the construct's path within the stack); ``notify`` and ``dashboard_name`` from
    #: its discovery record ("" for an older stack: read from its template and resources instead).
    uploader: str = discovery.LEGACY_NAME
    notify: str = ""
    dashboard_name: str = ""
    #: Every uploader of the stack, by name (``info`` lists them).
    uploaders: tuple[str, ...] = ()
    #: The distributed backfill's state machine and bucket ("" without ``backfill=True``).
    backfill_state_machine_arn: str = ""
    backfill_bucket_name: str = ""

    @classmethod
    def from_uploader(
        cls, stack_name: str, uploader: discovery.Uploader, names: tuple[str, ...] = ()
    ) -> StackResources:
        """The CLI's view of one uploader; ``names``: every uploader of its stack."""
        return cls(
            stack_name=stack_name,
            bucket_names=uploader.bucket_names,
            queue_url=uploader.queue_url,
            dead_letter_queue_url=uploader.dead_letter_queue_url,
            table_name=uploader.table_name,
            outputs=uploader.as_outputs(),
            uploader=uploader.name,
            notify=uploader.notify,
            dashboard_name=uploader.dashboard_name,
            uploaders=names or (uploader.name,),
            backfill_state_machine_arn=uploader.backfill_state_machine_arn,
            backfill_bucket_name=uploader.backfill_bucket_name,
        )

    @classmethod
    def from_outputs(cls, stack_name: str, outputs: dict[str, str]) -> StackResources:
        """The uploader of an older stack's named outputs ``{OutputKey: OutputValue}`` (``BucketNames``,
        ``QueueUrl``, ...); ``CliError`` when they are not there."""
        described = [{"OutputKey": key, "OutputValue": value} for key, value in outputs.items()]
        return cls.from_described(stack_name, described)

    @classmethod
    def from_described(
        cls, stack_name: str, outputs: list[dict[str, Any]], uploader: str | None = None
    ) -> StackResources:
        """The uploader ``uploader`` (else the only one) of ``DescribeStacks``' ``Outputs``: discovery
        records, or an older stack's named outputs; ``CliError`` (exit 2) naming the stack's uploaders when
        it is not one of them, or when there are several and none is named."""
        try:
            found = discovery.uploaders_of(outputs, stack_name)
            chosen = discovery.choose(found, stack_name, uploader)
        except discovery.DiscoveryError as exc:
            raise CliError(str(exc)) from None
        return cls.from_uploader(stack_name, chosen, tuple(u.name for u in found))


@dataclass(frozen=True)
class Watching:
    """What the stack watches: its buckets, and in each the keys of its prefix/suffix rules. The rules are
    the function's own (:mod:`kie_uploader.function.watch`, from its ``WATCHED_OBJECTS``), so that what the
    CLI enqueues, reports and refuses is what the function accepts. ``source`` says where they came from."""

    rules: watch.Watched
    stack_name: str
    source: str

    @property
    def buckets(self) -> tuple[str, ...]:
        """The served buckets, in the rules' order."""
        return tuple(dict.fromkeys(rule.bucket for rule in self.rules.rules))

    def require_served(self, bucket: str) -> None:
        """``CliError`` (exit 2, one line naming the stack's buckets) when the stack does not serve it."""
        if not self.rules.serves(bucket):
            names = ", ".join(self.buckets) or "none"
            raise CliError(
                f"bucket {bucket} is not watched by stack {self.stack_name} (its buckets: {names})"
            )

    def watches(self, bucket: str, key: str) -> bool:
        return self.rules.watches(bucket, key)

    def keys_of(self, bucket: str) -> str:
        """Which keys of a served bucket are watched: ``prefix incoming/`` (several rules: ``... or ...``),
        ``every key``."""
        rules = self.rules.rules_of(bucket)
        if any(not rule.prefix and not rule.suffix for rule in rules):
            return "every key"
        return " or ".join(rule.describe() for rule in rules)

    def outside(self, bucket: str, key: str) -> str | None:
        """Why a key of a served bucket is not watched (``outside prefix incoming/``), ``None`` when it is."""
        if self.watches(bucket, key):
            return None
        return f"outside {self.keys_of(bucket)}"

    def require_prefix(self, uri: S3Uri) -> None:
        """``CliError`` when the bucket is not served, or when no key under the prefix can be watched (say
        ``s3://b/other/`` of a stack that watches ``incoming/``): nothing under it is the stack's."""
        self.require_served(uri.bucket)
        rules = self.rules.rules_of(uri.bucket)
        if not any(rule.prefix.startswith(uri.key) or uri.key.startswith(rule.prefix) for rule in rules):
            raise CliError(
                f"{uri}: not watched: outside {self.keys_of(uri.bucket)} (stack {self.stack_name} watches "
                "nothing under it)"
            )

    def to_json(self) -> list[dict[str, str]]:
        return [rule.to_json() for rule in self.rules.rules]


def watching_of(stack: StackResources, environment: dict[str, str] | None, *, why: str = "") -> Watching:
    """The stack's rules from the function's environment (``watch.from_env``: ``WATCHED_OBJECTS``, else
    every key of ``ALLOWED_BUCKETS``), else every key of the uploader's buckets
    (a stack from before ``WATCHED_OBJECTS``, or a function whose configuration could not be read:
    ``why``)."""
    env = environment or {}
    try:
        rules = watch.from_env(env)
    except ValueError as exc:
        raise CliError(f"the function of stack {stack.stack_name} has a malformed {exc}") from None
    if rules is not None and watch.VARIABLE in env and env[watch.VARIABLE].strip():
        source = f"the function's {watch.VARIABLE}"
    elif rules is not None:
        source = "the function's ALLOWED_BUCKETS (every key: a function from before WATCHED_OBJECTS)"
    else:
        rules = watch.Watched.of_buckets(stack.bucket_names)
        source = "the uploader's buckets (every key" + (f": {why})" if why else ")")
    return Watching(rules, stack.stack_name, source)


class _Client(Generic[C]):
    """A client of one AWS service, built on first use and kept on the instance (as ``cached_property``:
    a test may put its own into the instance's ``__dict__``)."""

    def __init__(self, service: str) -> None:
        self.service = service

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, aws: Aws, owner: type | None = None) -> C:
        client: C = aws.client(self.service)
        aws.__dict__[self.name] = client
        return client


class Aws:
    """One boto3 session and its clients, each built once on first use; the stack's resources and what it
    watches, each read once (stack discovery)."""

    cloudformation: _Client[CloudFormationClient] = _Client("cloudformation")
    s3: _Client[S3Client] = _Client("s3")
    sqs: _Client[SQSClient] = _Client("sqs")
    dynamodb: _Client[DynamoDBClient] = _Client("dynamodb")
    sfn: _Client[SFNClient] = _Client("stepfunctions")

    def __init__(
        self,
        region: str | None = None,
        stack_name: str = DEFAULT_STACK,
        profile: str | None = None,
        uploader: str | None = None,
    ) -> None:
        problem = endpoint_problem()  # botocore would only say "Invalid endpoint" (a ValueError)
        if problem is not None:
            raise CliError(problem)
        self.session = live.session(region, profile)
        self.stack_name = stack_name
        #: ``--uploader``: which of the stack's uploaders (None: the only one).
        self.uploader_name = uploader
        # Standard retries absorb throttling; short connect timeouts make a wrong endpoint fail fast.
        self._config = Config(
            retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=60
        )

    def client(self, service: str) -> Any:
        return self.session.client(service, config=self._config)

    @cached_property
    def lambda_(self) -> LambdaClient:
        """For synchronous invocations: waits as long as the function may run."""
        return live.lambda_client(self.session)

    @property
    def function_name(self) -> str:
        name = self.stack.outputs.get("FunctionName")
        if not name:
            raise CliError(
                f"uploader {self.stack.uploader} of stack {self.stack_name} names no function: "
                "is it a kie-uploader stack?"
            )
        return name

    @cached_property
    def described(self) -> dict[str, Any]:
        """The stack as DescribeStacks describes it (its status, its outputs with their descriptions);
        ``CliError`` when there is no such stack."""
        try:
            stacks = self.cloudformation.describe_stacks(StackName=self.stack_name).get("Stacks", [])
        except ClientError as exc:
            error = exc.response.get("Error", {})
            if error.get("Code") == "ValidationError" and "does not exist" in error.get("Message", ""):
                raise CliError(self._no_such_stack()) from exc
            raise
        if not stacks:
            raise CliError(self._no_such_stack())
        return dict(stacks[0])

    @cached_property
    def stack(self) -> StackResources:
        """The chosen uploader's resources, from the stack's outputs (its discovery records)."""
        outputs = [dict(output) for output in self.described.get("Outputs", [])]
        return StackResources.from_described(self.stack_name, outputs, self.uploader_name)

    @cached_property
    def watching(self) -> Watching:
        """What the stack watches, from its function's configuration (``GetFunctionConfiguration``): every
        command that names objects checks them here, with the function's own rules."""
        stack = self.stack
        if not stack.outputs.get("FunctionName"):
            return watching_of(stack, None, why="the uploader names no function")
        try:
            config = self.lambda_.get_function_configuration(FunctionName=self.function_name)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code not in ("AccessDenied", "AccessDeniedException", "ResourceNotFoundException"):
                raise
            why = f"the function's configuration could not be read: {code}"
            console.note(f"kie-uploader: note: {why}; every key of the stack's buckets is taken as watched")
            return watching_of(stack, None, why=why)
        return watching_of(stack, dict(config.get("Environment", {}).get("Variables", {})))

    def _no_such_stack(self) -> str:
        region = self.session.region_name or "the default region"
        return f"no such stack: {self.stack_name} in {region} (deploy it, or pass --stack NAME)"
