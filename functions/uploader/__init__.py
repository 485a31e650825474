"""The uploader Lambda function: S3 objects → presigned GET URL → kie.ai URL upload → DynamoDB record.

Handler: ``uploader.handler.handler``.
"""
