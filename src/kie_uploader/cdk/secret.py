"""The kie.ai API key's secret: created empty, or an existing one the user passes in."""

from __future__ import annotations

from typing import cast

from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct


class ApiKeySecret(Construct):
    """``secret`` holds the raw key or ``{"apiKey": "..."}``; the operator puts the value after deploying."""

    def __init__(
        self, scope: Construct, construct_id: str, *, existing_secret: secretsmanager.ISecret | None
    ) -> None:
        super().__init__(scope, construct_id)
        self.secret: secretsmanager.ISecret
        self.created = existing_secret is None
        if existing_secret is not None:
            self.secret = existing_secret
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
