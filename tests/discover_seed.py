"""A realistic account in moto for `relocate discover`: what a small social app keeps on AWS."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

from helpers import aws_client

BUCKETS = {"townsquare-media": 12, "townsquare-backups": 3, "townsquare-site": 2}


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("handler.py", "def handler(event, context):\n    return 'ok'\n")
    return buf.getvalue()


def seed_account(endpoint: str) -> dict[str, Any]:
    c = lambda svc: aws_client(svc, endpoint)  # noqa: E731
    s3 = c("s3")
    for name, n in BUCKETS.items():
        s3.create_bucket(Bucket=name)
        for i in range(n):
            s3.put_object(Bucket=name, Key=f"obj/{i:03d}.bin", Body=b"x" * (1000 + i))
    s3.put_bucket_versioning(Bucket="townsquare-media", VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_encryption(Bucket="townsquare-media", ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    s3.put_bucket_lifecycle_configuration(Bucket="townsquare-backups", LifecycleConfiguration={
        "Rules": [{"ID": "expire", "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 30}}]})
    s3.put_bucket_website(Bucket="townsquare-site", WebsiteConfiguration={"IndexDocument": {"Suffix": "index.html"}})

    c("rds").create_db_instance(DBInstanceIdentifier="townsquare-db", DBInstanceClass="db.t3.medium", Engine="postgres",
                                EngineVersion="15.4", AllocatedStorage=100, MasterUsername="app", MasterUserPassword="pw-never-shown-1")
    ec2 = c("ec2")
    image = ec2.describe_images()["Images"][0]["ImageId"]
    for name in ("web-1", "bastion"):
        ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.small",
                          TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": name}]}])
    ssm = c("ssm")
    for k, v in {"db_host": "db.internal", "db_password": "ssm-value-never-shown", "mode": "production"}.items():
        ssm.put_parameter(Name=f"/townsquare/prod/{k}", Value=v, Type="SecureString" if "password" in k else "String")
    ssm.put_parameter(Name="/townsquare/staging/mode", Value="staging", Type="String")
    sm = c("secretsmanager")
    sm.create_secret(Name="townsquare/prod/api", SecretString=json.dumps({"token": "secret-value-never-shown"}))
    sm.create_secret(Name="townsquare/prod/db", SecretString=json.dumps({"password": "secret-value-never-shown-2"}))
    r53 = c("route53")
    r53.create_hosted_zone(Name="townsquare.example", CallerReference="z1")
    c("cloudfront").create_distribution(DistributionConfig={
        "CallerReference": "cf1", "Comment": "media", "Enabled": True,
        "Origins": {"Quantity": 1, "Items": [{"Id": "s3", "DomainName": "townsquare-media.s3.amazonaws.com",
                                               "S3OriginConfig": {"OriginAccessIdentity": ""}}]},
        "DefaultCacheBehavior": {"TargetOriginId": "s3", "ViewerProtocolPolicy": "allow-all", "MinTTL": 0,
                                 "ForwardedValues": {"QueryString": False, "Cookies": {"Forward": "none"}},
                                 "TrustedSigners": {"Enabled": False, "Quantity": 0}},
    })
    ses = c("ses")
    ses.verify_domain_identity(Domain="townsquare.example")
    ses.verify_email_identity(EmailAddress="noreply@townsquare.example")
    c("sqs").create_queue(QueueName="townsquare-jobs")
    c("sns").create_topic(Name="townsquare-alerts")
    c("ecr").create_repository(repositoryName="townsquare/web")
    role = c("iam").create_role(RoleName="lambda-role", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}))
    c("lambda").create_function(FunctionName="townsquare-thumbnailer", Runtime="python3.11", Role=role["Role"]["Arn"],
                                Handler="handler.handler", Code={"ZipFile": _zip()})
    ecs = c("ecs")
    ecs.create_cluster(clusterName="townsquare")
    ecs.register_task_definition(family="web", containerDefinitions=[{"name": "web", "image": "nginx", "memory": 128}])
    ecs.create_service(cluster="townsquare", serviceName="web", taskDefinition="web", desiredCount=1)
    vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    subnets = [s["SubnetId"] for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]][:2]
    c("elbv2").create_load_balancer(Name="townsquare-lb", Subnets=subnets)
    c("acm").request_certificate(DomainName="townsquare.example")
    return {"secret_values": ["pw-never-shown-1", "ssm-value-never-shown", "secret-value-never-shown"]}
