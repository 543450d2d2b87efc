"""Read-only sources: what the app has on its cloud. boto3 lives only in this package."""
