"""A CDK app of its own for ``EventPublisher`` (tests/e2e/test_publisher_deploy.py runs it with the CLI):
a table with a stream, the publisher on the default bus, and a consumer's rule to an SQS queue.

``PUBLISHER_ASSET`` names the folder the function's code is taken from, ready to run (the test fills it).
"""

from __future__ import annotations

import os

from aws_cdk import App, CfnOutput, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs

from kie_uploader.cdk.publisher import EventPublisher

STACK_NAME = "KiePublisherE2E"


def main() -> None:
    app = App()
    stack = Stack(app, STACK_NAME)
    table = dynamodb.Table(
        stack,
        "Records",
        partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        stream=dynamodb.StreamViewType.NEW_AND_OLD_IMAGES,
        removal_policy=RemovalPolicy.DESTROY,
    )
    publisher = EventPublisher(
        stack, "Events", table=table, bus=None, code=lambda_.Code.from_asset(os.environ["PUBLISHER_ASSET"])
    )
    consumer = sqs.Queue(stack, "Consumer", enforce_ssl=True)
    publisher.rule("ConsumerRule", targets=[targets.SqsQueue(consumer)])
    outputs = {
        "TableName": table.table_name,
        "ConsumerQueueUrl": consumer.queue_url,
        "PublisherDeadLetterQueueUrl": publisher.dead_letter_queue.queue_url,
        "PublisherFunctionName": publisher.function.function_name,
        "EventBusName": publisher.bus_name,
        "EventPattern": publisher.event_pattern_json,
    }
    for key, value in outputs.items():
        CfnOutput(stack, key, value=value)
    app.synth()


if __name__ == "__main__":
    main()
