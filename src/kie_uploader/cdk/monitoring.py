"""Alarms to an SNS topic (optionally e-mailed) and a small dashboard from the function's own metrics."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

# The function's EMF metrics (Powertools adds the ``service`` dimension to every one).
METRICS_NAMESPACE = "KieUploader"
SERVICE_DIMENSION = {"service": "kie-uploader"}
METRIC_UPLOADED = "UploadSucceeded"
METRIC_FAILED = "UploadFailed"
METRIC_SKIPPED = "ObjectsSkipped"
METRIC_KIE_LATENCY = "KieLatency"
PERIOD = Duration.minutes(5)


def threshold_alarm(
    scope: Construct,
    name: str,
    metric: cloudwatch.IMetric,
    *,
    threshold: float,
    description: str,
    topic: sns.ITopic | None,
) -> cloudwatch.Alarm:
    """An alarm when ``metric`` goes above ``threshold`` in one period; ALARM and OK go to ``topic``."""
    alarm = cloudwatch.Alarm(
        scope,
        name,
        metric=metric,
        threshold=threshold,
        comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluation_periods=1,
        # No data means no traffic, which is not a failure.
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        alarm_description=description,
    )
    if topic is not None:
        action = cloudwatch_actions.SnsAction(topic)
        alarm.add_alarm_action(action)
        alarm.add_ok_action(action)
    return alarm


class Monitoring(Construct):
    """``topic`` receives every alarm's ALARM and OK transitions."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        function: lambda_.IFunction,
        queue: sqs.IQueue,
        dead_letter_queue: sqs.IQueue,
        alarm_email: str | None,
        oldest_message_age: Duration,
        encryption_key: kms.IKey | None = None,
    ) -> None:
        """``encryption_key``: the topic's customer managed key (its policy must allow CloudWatch: see
        encryption.py); without one the topic has no SSE (SNS's AWS managed key cannot allow CloudWatch)."""
        super().__init__(scope, construct_id)
        self.topic = sns.Topic(
            self,
            "AlarmTopic",
            display_name="kie-uploader alarms",
            enforce_ssl=True,
            master_key=encryption_key,
        )
        if alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(alarm_email))

        self.alarms = [
            self._alarm(
                "DeadLetterMessages",
                dead_letter_queue.metric_approximate_number_of_messages_visible(
                    period=Duration.minutes(1), statistic=cloudwatch.Stats.MAXIMUM
                ),
                threshold=0,
                description="Objects are waiting in the dead-letter queue: fix the cause, then redrive them",
            ),
            self._alarm(
                "FunctionErrors",
                function.metric_errors(period=PERIOD, statistic=cloudwatch.Stats.SUM),
                threshold=0,
                description="The uploader function failed invocations (retried, then parked in the DLQ)",
            ),
            self._alarm(
                "FunctionThrottles",
                function.metric_throttles(period=PERIOD, statistic=cloudwatch.Stats.SUM),
                threshold=0,
                description="The uploader function was throttled (account concurrency exhausted)",
            ),
            self._alarm(
                "UploadsFailed",
                cloudwatch.Metric(
                    namespace=METRICS_NAMESPACE,
                    metric_name=METRIC_FAILED,
                    dimensions_map=SERVICE_DIMENSION,
                    statistic=cloudwatch.Stats.SUM,
                    period=PERIOD,
                ),
                threshold=0,
                description=(
                    "Objects were recorded FAILED (kie.ai refused them, or they are over MAX_OBJECT_BYTES): "
                    "`kie-uploader list --status FAILED` names them, `kie-uploader retry-failed` retries them"
                ),
            ),
            self._alarm(
                "QueueOldestMessageAge",
                queue.metric_approximate_age_of_oldest_message(
                    period=PERIOD, statistic=cloudwatch.Stats.MAXIMUM
                ),
                threshold=oldest_message_age.to_seconds(),
                description="Messages wait too long on the queue: the function is failing or too slow",
            ),
        ]
        self.dashboard = self._dashboard(function=function, queue=queue, dead_letter_queue=dead_letter_queue)

    def _alarm(
        self, name: str, metric: cloudwatch.IMetric, *, threshold: float, description: str
    ) -> cloudwatch.Alarm:
        return threshold_alarm(
            self, name, metric, threshold=threshold, description=description, topic=self.topic
        )

    def _dashboard(
        self, *, function: lambda_.IFunction, queue: sqs.IQueue, dead_letter_queue: sqs.IQueue
    ) -> cloudwatch.Dashboard:
        def own(name: str, statistic: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace=METRICS_NAMESPACE,
                metric_name=name,
                dimensions_map=SERVICE_DIMENSION,
                statistic=statistic,
                period=PERIOD,
            )

        dashboard = cloudwatch.Dashboard(self, "Dashboard")
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Objects",
                left=[
                    own(METRIC_UPLOADED, cloudwatch.Stats.SUM),
                    own(METRIC_FAILED, cloudwatch.Stats.SUM),
                    own(METRIC_SKIPPED, cloudwatch.Stats.SUM),
                ],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="kie.ai latency (ms)",
                left=[
                    own(METRIC_KIE_LATENCY, cloudwatch.Stats.AVERAGE),
                    own(METRIC_KIE_LATENCY, cloudwatch.Stats.p(99)),
                ],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Queue depth",
                left=[
                    queue.metric_approximate_number_of_messages_visible(period=PERIOD),
                    dead_letter_queue.metric_approximate_number_of_messages_visible(period=PERIOD),
                ],
                right=[queue.metric_approximate_age_of_oldest_message(period=PERIOD)],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Function",
                left=[function.metric_invocations(period=PERIOD), function.metric_errors(period=PERIOD)],
                right=[function.metric_duration(period=PERIOD, statistic=cloudwatch.Stats.p(99))],
                width=12,
            ),
        )
        return dashboard
