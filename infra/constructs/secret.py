"""The kie.ai API key's secret: created empty by the stack, or an existing one by ARN."""

from __future__ import annotations

from typing import cast

from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct


class ApiKeySecret(Construct):
    """``secret`` holds the raw key or ``{"apiKey": "..."}``; the operator puts the value after deploying."""

    def __init__(self, scope: Construct, construct_id: str, *, existing_secret_arn: str | None) -> None:
        super().__init__(scope, construct_id)
        self.secret: secretsmanager.ISecret
        self.created = not existing_secret_arn
        if existing_secret_arn:
            self.secret = secretsmanager.Secret.from_secret_complete_arn(
                self, "Existing", existing_secret_arn
            )
            return
        secret = secretsmanager.Secret(
            self,
            "Secret",
            description='kie.ai API key used by the kie-uploader function (raw key or JSON {"apiKey": ...})',
        )
        # CDK would generate a random value, which looks like a key but is not one. With neither
        # GenerateSecretString nor SecretString, CloudFormation creates the secret without a value, so the
        # function reports a configuration error until the operator puts the real key.
        cast(secretsmanager.CfnSecret, secret.node.default_child).add_property_deletion_override(
            "GenerateSecretString"
        )
        self.secret = secret
