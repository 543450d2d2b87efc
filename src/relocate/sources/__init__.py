"""Read-only sources: what the app has on its cloud. botocore (the core of the AWS SDK, boto3) lives only in this package."""
