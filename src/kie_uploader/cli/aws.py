"""AWS access and stack discovery: one boto3 session, its clients, and the stack's resources.

A command names a stack (``--stack``, ``$KIE_UPLOADER_STACK``, else ``KieUploader``); :class:`Aws` finds its
resources from its CloudFormation outputs (:class:`StackResources`) and what it watches from its function's
``WATCHED_OBJECTS`` (:class:`Watching`, the function's own rules), each read once, on first use. Every
client uses the standard credential chain; ``AWS_ENDPOINT_URL`` points them at a local stack instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from botocore.config import Config
from botocore.exceptions import ClientError

from kie_uploader import live
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

C = TypeVar("C")


REQUIRED_OUTPUTS = ("BucketNames", "QueueUrl", "DeadLetterQueueUrl", "TableName")


@dataclass(frozen=True)
class StackResources:
    """What the CLI needs from the stack's CloudFormation outputs."""

    stack_name: str
    bucket_names: tuple[str, ...]
    queue_url: str
    dead_letter_queue_url: str
    table_name: str
    outputs: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_outputs(cls, stack_name: str, outputs: dict[str, str]) -> StackResources:
        missing = [name for name in REQUIRED_OUTPUTS if not outputs.get(name)]
        if missing:
            raise CliError(
                f"stack {stack_name} has no output {', '.join(missing)}: is it a kie-uploader stack?"
            )
        buckets = tuple(name.strip() for name in outputs["BucketNames"].split(",") if name.strip())
        return cls(
            stack_name=stack_name,
            bucket_names=buckets,
            queue_url=outputs["QueueUrl"],
            dead_letter_queue_url=outputs["DeadLetterQueueUrl"],
            table_name=outputs["TableName"],
            outputs=dict(outputs),
        )


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
    every key of ``ALLOWED_BUCKETS``), else every key of the buckets of the stack's ``BucketNames`` output
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
        source = "the stack's BucketNames output (every key" + (f": {why})" if why else ")")
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

    def __init__(
        self, region: str | None = None, stack_name: str = DEFAULT_STACK, profile: str | None = None
    ) -> None:
        problem = endpoint_problem()  # botocore would only say "Invalid endpoint" (a ValueError)
        if problem is not None:
            raise CliError(problem)
        self.session = live.session(region, profile)
        self.stack_name = stack_name
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
            raise CliError(f"stack {self.stack_name} has no output FunctionName: is it a kie-uploader stack?")
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
        """The stack's resources, from its outputs."""
        outputs = {o["OutputKey"]: o.get("OutputValue", "") for o in self.described.get("Outputs", [])}
        return StackResources.from_outputs(self.stack_name, outputs)

    @cached_property
    def watching(self) -> Watching:
        """What the stack watches, from its function's configuration (``GetFunctionConfiguration``): every
        command that names objects checks them here, with the function's own rules."""
        stack = self.stack
        if not stack.outputs.get("FunctionName"):
            return watching_of(stack, None, why="the stack has no FunctionName output")
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
