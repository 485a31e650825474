"""``kie-uploader doctor``: what would stop the stack from working on the buckets it is given.

For each bucket of the settings (``kie-uploader.settings.json`` with ``-c`` on top, or ``--bucket``):

- its region against the stack's (S3 sends notifications only to targets in the bucket's own region);
- existing notification rules that overlap the stack's (same event type, overlapping prefix and suffix):
  S3 refuses the whole configuration, so the deploy fails (an ``EventBridgeConfiguration`` is fine);
- bucket-policy ``Deny`` statements whose conditions stop kie.ai's download of the presigned URL
  (``aws:SourceIp``, ``aws:SourceVpce``, ``aws:SourceVpc``, ``s3:authType`` other than
  ``REST-QUERY-STRING``, an ``s3:signatureAge`` shorter than the URL's lifetime; ``aws:SecureTransport``
  is fine: the URL is https);
- SSE-KMS default encryption with a key that is not in ``bucketKmsKeyArns`` (the function could not
  decrypt, so the presigned GET fails);
- Requester Pays (kie.ai's GET carries no ``x-amz-request-payer``).

And once: the prefix and suffix filters (S3 matches them against URL-encoded keys, so a space, a ``+``
or a non-ASCII character must be written encoded), and whether the secret holds a key.

Each finding is one line: severity, what, what to do. Only ``ERROR`` findings make the exit code non-zero.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from kie_uploader import bucket_policy, discovery, settings, settings_file
from kie_uploader.settings import encode_filter, may_be_encoded, unencoded

ERROR = "ERROR"
WARN = "WARN"
INFO = "INFO"

DEFAULT_PRESIGN_SECONDS = 900
#: The events the stack subscribes to on each bucket (infra/stack.py).
STACK_EVENTS = ("s3:ObjectCreated:*", "s3:ObjectRemoved:*")
_NOTIFICATION_TYPES = {
    "QueueConfigurations": "QueueArn",
    "TopicConfigurations": "TopicArn",
    "LambdaFunctionConfigurations": "LambdaFunctionArn",
}
#: Modes in which the stack adds S3 notification rules of its own (eventbridge adds none).
_RULE_MODES = ("lambda", "queue")


@dataclass(frozen=True)
class Finding:
    """One problem (or note): severity, what it is about, what is wrong, what to do."""

    severity: str
    subject: str
    what: str
    todo: str = ""

    def line(self) -> str:
        text = f"{self.severity:<5} {self.subject}: {self.what}"
        return f"{text} -> {self.todo}" if self.todo else text


@dataclass(frozen=True)
class Plan:
    """What the stack will be deployed with: the parts of its settings that doctor checks."""

    region: str
    stack_name: str = "KieUploader"
    bucket_names: tuple[str, ...] = ()
    prefix: str = ""
    suffix: str = ""
    notify: str = "queue"
    presign_expires_seconds: int = DEFAULT_PRESIGN_SECONDS
    bucket_kms_key_arns: tuple[str, ...] = ()
    api_key_secret_arn: str | None = None
    #: True when the buckets are new (the stack creates its own): there is nothing to look at on S3 yet.
    creates_bucket: bool = field(default=False)
    #: How the bytes reach kie.ai (``transfer``), and the buckets recorded as ones kie.ai cannot fetch from
    #: (``kieCannotFetch``): they decide which transfer serves a bucket whose policy stops kie.ai's download.
    transfer: str = "auto"
    kie_cannot_fetch: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, values: Mapping[str, str], *, region: str, buckets: Sequence[str] = ()) -> Plan:
        """From the settings file's values with the context on top (strings, as ``-c`` gives them)."""
        names = tuple(buckets) or _split(values.get("bucketNames"))
        try:
            presign = int(values.get("presignExpiresSeconds") or DEFAULT_PRESIGN_SECONDS)
        except ValueError:
            presign = DEFAULT_PRESIGN_SECONDS
        return cls(
            region=region,
            stack_name=values.get("stackName") or "KieUploader",
            bucket_names=names,
            prefix=values.get("prefix") or "",
            suffix=values.get("suffix") or "",
            notify=values.get("notify") or "queue",
            presign_expires_seconds=presign,
            bucket_kms_key_arns=_split(values.get("bucketKmsKeyArns")),
            api_key_secret_arn=values.get("apiKeySecretArn") or None,
            creates_bucket=not names,
            transfer=values.get("transfer") or "auto",
            kie_cannot_fetch=_split(values.get("kieCannotFetch")),
        )


def _split(text: str | None) -> tuple[str, ...]:
    return tuple(dict.fromkeys(p.strip() for p in (text or "").split(",") if p.strip()))


class Clients:
    """The boto3 clients doctor uses, from a factory such as ``session.client`` or ``local_client``."""

    def __init__(self, factory: Callable[[str], Any]) -> None:
        self.s3 = factory("s3")
        self.secretsmanager = factory("secretsmanager")
        self.cloudformation = factory("cloudformation")


# --- the checks ------------------------------------------------------------------------------------


def check(
    context: Mapping[str, str],
    *,
    region: str,
    clients: Clients,
    settings_path: Path | None = None,
    buckets: Sequence[str] = (),
) -> list[Finding]:
    """Doctor on what a deploy with ``context`` (``-c``, over the settings file) would use: first what the
    deploy would refuse in the settings (unknown names, malformed values: :func:`settings.problems`; a
    changed guarded option), then every check of the plan (``buckets`` instead of the settings' own)."""
    values = settings_file.merged(context, settings_path) if settings_path else dict(context)
    refused = settings_file.unaccepted_changes(context, settings_path) if settings_path else []
    # A prefix or suffix S3 would not match is reported once, with its fix, by check_filters.
    problems = settings.problems({k: v for k, v in values.items() if k not in ("prefix", "suffix")})
    findings = [Finding(ERROR, "settings", message) for message in [*problems, *refused]]
    findings += run(Plan.from_settings(values, region=region, buckets=buckets), clients)
    return findings


def run(plan: Plan, clients: Clients) -> list[Finding]:
    """Every check of the plan; the findings in the order of the checks."""
    findings: list[Finding] = []
    stack = _deployed_stack(clients, plan.stack_name)
    findings += check_filters(plan)
    if plan.creates_bucket:
        findings.append(
            Finding(
                INFO, "buckets", "no bucketNames: the stack creates its own bucket, nothing to check on S3"
            )
        )
    own = _own_targets(clients, plan.stack_name) if stack else set()
    for bucket in plan.bucket_names:
        findings += check_bucket(plan, clients, bucket, stack_id=stack.get("StackId"), own_targets=own)
    findings += check_secret(plan, clients, stack_secret=stack.get("SecretArn"))
    return findings


def _deployed_stack(clients: Clients, stack_name: str) -> dict[str, str]:
    """``StackId`` and its uploader's resources of the deployed stack, or ``{}`` when it is not deployed
    (yet)."""
    try:
        stacks = clients.cloudformation.describe_stacks(StackName=stack_name).get("Stacks", [])
    except ClientError:
        return {}
    if not stacks:
        return {}
    try:
        uploaders = discovery.uploaders_of(stacks[0].get("Outputs", []), stack_name)
    except discovery.DiscoveryError:
        uploaders = []
    # The repository's stack has one uploader; its resources under the older outputs' names (SecretArn).
    found = uploaders[0].as_outputs() if len(uploaders) == 1 else {}
    found["StackId"] = stacks[0].get("StackId", "")
    return found


def _own_targets(clients: Clients, stack_name: str) -> set[str]:
    """Names of the deployed stack's queues and functions: rules that target them are the stack's own."""
    names: set[str] = set()
    try:
        pages = clients.cloudformation.get_paginator("list_stack_resources").paginate(StackName=stack_name)
        for page in pages:
            for resource in page.get("StackResourceSummaries", []):
                if resource.get("ResourceType") in ("AWS::SQS::Queue", "AWS::Lambda::Function"):
                    names.add(str(resource.get("PhysicalResourceId", "")).rstrip("/").rsplit("/", 1)[-1])
    except ClientError:
        pass
    return names


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def check_bucket(
    plan: Plan,
    clients: Clients,
    bucket: str,
    *,
    stack_id: str | None = None,
    own_targets: set[str] | frozenset[str] = frozenset(),
) -> list[Finding]:
    subject = f"bucket {bucket}"
    try:
        location = clients.s3.get_bucket_location(Bucket=bucket).get("LocationConstraint")
    except ClientError as exc:
        code = _error_code(exc)
        if code in ("NoSuchBucket", "404"):
            return [Finding(ERROR, subject, "does not exist", "create it, or fix bucketNames")]
        return [Finding(ERROR, subject, f"cannot be read ({code})", "check the bucket name and your access")]
    findings: list[Finding] = []
    region = {None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}.get(location, location)
    if region != plan.region:
        findings.append(
            Finding(
                ERROR,
                subject,
                f"is in {region}, the stack in {plan.region}: "
                "S3 notifies only targets in the bucket's own region",
                f"deploy the stack in {region} (AWS_REGION={region}), or use a bucket in {plan.region}",
            )
        )
    findings += _read(
        subject,
        "notification configuration",
        lambda: _notifications(plan, clients, bucket, stack_id, own_targets),
    )
    findings += _read(subject, "bucket policy", lambda: _policy(plan, clients, bucket))
    findings += _read(subject, "default encryption", lambda: _encryption(plan, clients, bucket))
    findings += _read(subject, "request payment", lambda: _request_payment(clients, bucket))
    return findings


def _read(subject: str, what: str, check: Callable[[], list[Finding]]) -> list[Finding]:
    try:
        return check()
    except ClientError as exc:
        return [
            Finding(WARN, subject, f"could not read its {what} ({_error_code(exc)})", "check it yourself")
        ]


# --- notifications ---------------------------------------------------------------------------------


def _notifications(
    plan: Plan, clients: Clients, bucket: str, stack_id: str | None, own_targets: set[str] | frozenset[str]
) -> list[Finding]:
    if plan.notify not in _RULE_MODES:
        return []  # EventBridge: the stack adds no rule, nothing can overlap
    config = clients.s3.get_bucket_notification_configuration(Bucket=bucket)
    findings = []
    for kind, arn_key in _NOTIFICATION_TYPES.items():
        for rule in config.get(kind, []):
            target = str(rule.get(arn_key, ""))
            if _is_own(rule, target, plan.stack_name, stack_id, own_targets):
                continue
            prefix, suffix = _rule_filter(rule)
            events = [
                e for e in rule.get("Events", []) if any(_events_overlap(e, mine) for mine in STACK_EVENTS)
            ]
            if (
                events
                and _overlap(prefix, plan.prefix, str.startswith)
                and _overlap(suffix, plan.suffix, str.endswith)
            ):
                findings.append(
                    Finding(
                        ERROR,
                        f"bucket {bucket}",
                        f"existing rule {rule.get('Id', '?')!r} ({', '.join(events)}, prefix {prefix!r}, "
                        f"suffix {suffix!r} -> {target}) overlaps the stack's ({', '.join(STACK_EVENTS)}, "
                        f"prefix {plan.prefix!r}, suffix {plan.suffix!r}): S3 refuses overlapping rules, "
                        "so the deploy would fail",
                        "give the stack a prefix/suffix that does not overlap (kie-uploader configure "
                        "prefix=...), or move that rule to EventBridge",
                    )
                )
    return findings


def _is_own(
    rule: Mapping[str, Any],
    target: str,
    stack_name: str,
    stack_id: str | None,
    own_targets: set[str] | frozenset[str] = frozenset(),
) -> bool:
    """A rule this stack put there: its target is one of the stack's queues or functions (CloudFormation
    names them ``<stack>-...``), or its id is CDK's ``<StackId>-<hash>``. Its own rules are replaced by the
    deploy, so they cannot overlap."""
    if stack_id and str(rule.get("Id", "")).startswith(f"{stack_id}-"):
        return True
    name = target.rsplit(":", 1)[-1]
    if name in own_targets:
        return True
    return bool(stack_name) and name.startswith(f"{stack_name}-")


def _rule_filter(rule: Mapping[str, Any]) -> tuple[str, str]:
    prefix = suffix = ""
    for item in rule.get("Filter", {}).get("Key", {}).get("FilterRules", []):
        if str(item.get("Name", "")).lower() == "prefix":
            prefix = str(item.get("Value", ""))
        elif str(item.get("Name", "")).lower() == "suffix":
            suffix = str(item.get("Value", ""))
    return prefix, suffix


def _events_overlap(a: str, b: str) -> bool:
    """``s3:ObjectCreated:*`` overlaps ``s3:ObjectCreated:Put``, and itself."""

    def parts(event: str) -> tuple[str, str]:
        family, _, kind = event.rpartition(":")
        return family, kind

    (fa, ka), (fb, kb) = parts(a), parts(b)
    if fa.startswith(fb) or fb.startswith(fa):
        return ka == kb or "*" in (ka, kb) or fa != fb
    return False


def _overlap(a: str, b: str, test: Callable[[str, str], bool]) -> bool:
    """Two prefix (or suffix) filters overlap unless neither is a prefix (suffix) of the other."""
    return test(a, b) or test(b, a)


# --- bucket policy ---------------------------------------------------------------------------------


def _policy(plan: Plan, clients: Clients, bucket: str) -> list[Finding]:
    try:
        text = clients.s3.get_bucket_policy(Bucket=bucket)["Policy"]
    except ClientError as exc:
        if _error_code(exc) == "NoSuchBucketPolicy":
            return []
        raise
    return policy_findings(json.loads(text), bucket, plan)


def policy_findings(policy: Mapping[str, Any], bucket: str, plan: Plan) -> list[Finding]:
    """Deny statements that would stop kie.ai's GET of a presigned URL for an object under the prefix, and
    which transfer serves the bucket then: the stream upload, where the function's own GetObject passes."""
    findings = []
    subject = f"bucket {bucket}"
    exempt = (
        "exempt presigned GETs of the stack's function role from this Deny (e.g. a StringNotLike "
        "aws:PrincipalArn condition with the role's ARN), or limit it to other prefixes"
    )
    resource = f"arn:aws:s3:::{bucket}/{plan.prefix}example"
    for denial in bucket_policy.denials(policy, resource, plan.presign_expires_seconds):
        sid = denial.sid
        if denial.unknown:
            findings.append(
                Finding(
                    WARN,
                    subject,
                    f"policy statement {sid} denies s3:GetObject under conditions doctor cannot evaluate "
                    f"({', '.join(denial.unknown)}); it may block kie.ai's download of the presigned URL",
                    "check that it spares the stack's function role",
                )
            )
        elif denial.blocking:
            findings.append(_blocked(plan, subject, bucket, sid, denial, exempt))
        else:
            findings.append(
                Finding(ERROR, subject, f"policy statement {sid} denies s3:GetObject to everyone", exempt)
            )
    return findings


def _blocked(
    plan: Plan, subject: str, bucket: str, sid: str, denial: bucket_policy.Denial, exempt: str
) -> Finding:
    """kie.ai cannot download the bucket's presigned URLs: which transfer serves it (issue 19)."""
    what = f"policy statement {sid} blocks kie.ai's download: {'; '.join(denial.blocking)}"
    record = f"kieCannotFetch={bucket}"
    if denial.network:
        # The function's own GetObject must come from there too: only a function placed in that network
        # (the construct's vpc prop, a NAT with an allowed address) can stream the objects.
        return Finding(
            ERROR,
            subject,
            f"{what}; no URL upload can serve this bucket, and a stream upload only from a function whose "
            "requests meet the statement too",
            f"{exempt}; or build the stack with the construct's vpc prop (the function in that network), "
            f"transfer auto or stream and {record} (README: Buckets kie.ai cannot reach)",
        )
    if plan.transfer == "url":
        return Finding(
            ERROR,
            subject,
            f"{what}; transfer=url: every object of this bucket would fail",
            f"{exempt}; or transfer=auto with {record}: the function streams the objects (its own "
            "requests are not presigned)",
        )
    if plan.transfer == "stream" or bucket in plan.kie_cannot_fetch:
        why = "transfer=stream" if plan.transfer == "stream" else record
        return Finding(
            INFO,
            subject,
            f"{what}; served by the stream upload ({why}): the function reads the objects itself",
        )
    return Finding(
        WARN,
        subject,
        f"{what}; transfer=auto serves it by the stream upload, after a failed URL upload of each object",
        f"record it: {record} (the stream from the first attempt)",
    )


# --- encryption ------------------------------------------------------------------------------------


def _encryption(plan: Plan, clients: Clients, bucket: str) -> list[Finding]:
    try:
        config = clients.s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
    except ClientError as exc:
        if _error_code(exc) == "ServerSideEncryptionConfigurationNotFoundError":
            return []
        raise
    findings = []
    for rule in config.get("Rules", []):
        default = rule.get("ApplyServerSideEncryptionByDefault", {})
        if not str(default.get("SSEAlgorithm", "")).startswith("aws:kms"):
            continue
        key = str(default.get("KMSMasterKeyID") or "")
        if not key:
            continue  # the AWS managed key aws/s3: usable by every role of the account through S3
        if not _key_listed(key, plan.bucket_kms_key_arns):
            findings.append(
                Finding(
                    ERROR,
                    f"bucket {bucket}",
                    f"new objects are encrypted with KMS key {key}, which is not in bucketKmsKeyArns: the "
                    "function gets no kms:Decrypt on it, so kie.ai's presigned GET fails",
                    f"kie-uploader configure bucketKmsKeyArns={','.join((*plan.bucket_kms_key_arns, key))} "
                    "(the key's ARN, not an alias)",
                )
            )
    return findings


def _key_listed(key: str, listed: Iterable[str]) -> bool:
    key_id = key.rsplit("/", 1)[-1]
    return any(key == arn or arn.rsplit("/", 1)[-1] == key_id for arn in listed)


def _request_payment(clients: Clients, bucket: str) -> list[Finding]:
    payer = clients.s3.get_bucket_request_payment(Bucket=bucket).get("Payer")
    if payer != "Requester":
        return []
    return [
        Finding(
            ERROR,
            f"bucket {bucket}",
            "is Requester Pays: kie.ai's GET of the presigned URL sends no x-amz-request-payer, "
            "so S3 refuses it",
            "turn Requester Pays off for this bucket, or use another one",
        )
    ]


# --- filters ---------------------------------------------------------------------------------------


def check_filters(plan: Plan) -> list[Finding]:
    findings = []
    for name, value in (("prefix", plan.prefix), ("suffix", plan.suffix)):
        if value:
            findings += filter_findings(name, value)
    return findings


def filter_findings(name: str, value: str) -> list[Finding]:
    """A prefix/suffix that S3 would not match as written (S3 compares it with URL-encoded keys)."""
    findings = []
    must = unencoded(value)
    if must:
        findings.append(
            Finding(
                ERROR,
                name,
                f"{value!r} holds {', '.join(repr(c) for c in must)}, which S3 matches only URL-encoded "
                "(as object keys appear in events): as written it matches nothing",
                f"kie-uploader configure {name}={encode_filter(value)}",
            )
        )
    if "+" in value:
        findings.append(
            Finding(
                WARN,
                name,
                f"{value!r} holds '+', which S3 reads as an encoded space",
                "keep it if you mean a space; write a literal '+' as %2B",
            )
        )
    maybe = may_be_encoded(value)
    if maybe:
        findings.append(
            Finding(
                WARN,
                name,
                f"{value!r} holds {', '.join(repr(c) for c in maybe)}, which S3 may write encoded in events",
                "check with one test object that the filter matches",
            )
        )
    return findings


# --- the secret ------------------------------------------------------------------------------------


def check_secret(plan: Plan, clients: Clients, *, stack_secret: str | None) -> list[Finding]:
    secret_id = plan.api_key_secret_arn or stack_secret
    imported = plan.api_key_secret_arn is not None
    if not secret_id:
        return [
            Finding(
                INFO,
                "secret",
                "the stack creates an empty secret for the kie.ai key",
                "put the key into it after the deploy (`kie-uploader set-key`; README, Deploy to AWS)",
            )
        ]
    subject = f"secret {secret_id}"
    severity = ERROR if imported else WARN
    put = (
        f'aws secretsmanager put-secret-value --secret-id {secret_id} --secret-string \'{{"apiKey":"..."}}\''
    )
    try:
        clients.secretsmanager.describe_secret(SecretId=secret_id)
    except ClientError as exc:
        code = _error_code(exc)
        if code == "ResourceNotFoundException":
            return [Finding(ERROR, subject, "does not exist", "create it, or fix apiKeySecretArn")]
        return [Finding(WARN, subject, f"cannot be read ({code})", "check that it holds the kie.ai key")]
    try:
        value = clients.secretsmanager.get_secret_value(SecretId=secret_id)
    except ClientError as exc:
        code = _error_code(exc)
        if code == "ResourceNotFoundException":  # the secret exists, but has no value (AWSCURRENT)
            return [Finding(severity, subject, "holds no kie.ai key: every upload would fail", put)]
        return [
            Finding(WARN, subject, f"its value cannot be read ({code})", "check that it holds the kie.ai key")
        ]
    if not _holds_key(value):
        return [Finding(severity, subject, "holds no kie.ai key: every upload would fail", put)]
    return []


def _holds_key(value: Mapping[str, Any]) -> bool:
    text = value.get("SecretString")
    if not text:
        return bool(value.get("SecretBinary"))
    text = str(text).strip()
    if text.startswith("{"):
        try:
            document = json.loads(text)
        except json.JSONDecodeError:
            return False
        return isinstance(document, dict) and bool(str(document.get("apiKey", "")).strip())
    return bool(text)


# --- output and the command ------------------------------------------------------------------------


def errors(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == ERROR]
