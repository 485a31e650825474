"""The construct for a bucket kie.ai cannot reach (issue 19): the function in the user's VPC, streaming the
bucket's objects (``kie_cannot_fetch``), its timeout sized for a stream; cdk-nag passes (the one managed
policy a function in a VPC needs is acknowledged, with its reason)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.infra.conftest import USER_BUCKETS, Synth, synthesize_user_stack


def _props(stack: Any) -> dict[str, Any]:
    from aws_cdk import aws_ec2 as ec2

    from kie_uploader.cdk import FunctionOptions

    vpc = ec2.Vpc(stack, "Vpc", max_azs=2, nat_gateways=1)
    vpc.add_flow_log("FlowLog")  # the user's VPC, as cdk-nag wants it
    vpc.add_gateway_endpoint("S3", service=ec2.GatewayVpcEndpointAwsService.S3)
    vpc.add_gateway_endpoint("DynamoDB", service=ec2.GatewayVpcEndpointAwsService.DYNAMODB)
    group = ec2.SecurityGroup(stack, "UploaderEni", vpc=vpc, description="uploader ENIs")
    stack.test_vpc, stack.test_group = vpc, group
    return {
        "vpc": vpc,
        "vpc_subnets": ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
        "security_groups": [group],
        "function_options": FunctionOptions(kie_cannot_fetch=(USER_BUCKETS[0],)),
    }


@pytest.fixture(scope="module")
def vpc_synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return synthesize_user_stack(_props, Path(tmp_path_factory.mktemp("stream-vpc")))


def uploader_function(synth: Synth) -> dict[str, Any]:
    functions = [
        resource["Properties"]
        for resource in synth.template["Resources"].values()
        if resource["Type"] == "AWS::Lambda::Function"
        and resource["Properties"].get("Handler") == "uploader.handler.handler"
    ]
    (function,) = functions
    return function


def test_the_function_runs_in_the_private_subnets_with_the_given_security_group(vpc_synth: Synth) -> None:
    config = uploader_function(vpc_synth)["VpcConfig"]
    assert len(config["SubnetIds"]) == 2 and len(config["SecurityGroupIds"]) == 1
    private = {
        logical
        for logical, resource in vpc_synth.template["Resources"].items()
        if resource["Type"] == "AWS::EC2::Subnet" and "Private" in logical
    }
    assert {ref["Ref"] for ref in config["SubnetIds"]} == private


def test_it_streams_the_unreachable_bucket_with_a_timeout_sized_for_a_stream(vpc_synth: Synth) -> None:
    function = uploader_function(vpc_synth)
    env = function["Environment"]["Variables"]
    assert (env["TRANSFER"], env["KIE_CANNOT_FETCH"]) == ("auto", USER_BUCKETS[0])
    assert env["MAX_OBJECT_BYTES"] == ""  # none: what a stream carries within 15 minutes
    assert function["Timeout"] == 900


def test_cdk_nag_passes_with_the_vpc_access_policy_acknowledged(vpc_synth: Synth) -> None:
    # synthesize_user_stack runs cdk-nag: a finding not acknowledged would have failed the synth
    assert any("AWSLambdaVPCAccessExecutionRole" in finding for finding in vpc_synth.acknowledged)


def test_subnets_or_security_groups_without_a_vpc_are_refused() -> None:
    from aws_cdk import App, Stack
    from aws_cdk import aws_ec2 as ec2
    from aws_cdk import aws_s3 as s3

    from kie_uploader.cdk import KieUploader, KieUploaderPropsError

    stack = Stack(App(), "NoVpc")
    bucket = s3.Bucket.from_bucket_name(stack, "B", "user-photos")
    with pytest.raises(KieUploaderPropsError, match="without vpc"):
        KieUploader(
            stack,
            "Uploader",
            buckets=[bucket],
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
        )
