"""The kie.ai API key's secret: created empty, or an existing one the user passes in."""

from __future__ import annotations

from typing import cast

from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct


class ApiKeySecret(Construct):
    """``secret`` holds the raw key or ``{"apiKey": "..."}``; the operator puts the value after deploying."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        existing_secret: secretsmanager.ISecret | None,
        encryption_key: kms.IKey | None = None,
    ) -> None:
        """``encryption_key``: the created secret's customer managed key (default: Secrets Manager's AWS
        managed key). An existing secret keeps its own key."""
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
            encryption_key=encryption_key,
        )
        # CDK would generate a random value, which looks like a key but is not one. With neither
        # GenerateSecretString nor SecretString, CloudFormation creates the secret without a value, so the
        # function reports a configuration error until the operator puts the real key.
        cast(secretsmanager.CfnSecret, secret.node.default_child).add_property_deletion_override(
            "GenerateSecretString"
        )
        self.secret = secret
