"""`rapport engine` prints an endpoint any AWS tool can use: DynamoDB Local keeps one database for every
access key and region (-sharedDb), so the AWS CLI with a profile, or `sam local invoke` with env.json,
sees the tables rapport created."""

from __future__ import annotations

import boto3
from rapport_local.engine import local_client


def test_tools_with_other_credentials_and_regions_see_the_same_tables(
    dynamodb_endpoint: str, table: str
) -> None:
    assert table in local_client(dynamodb_endpoint).list_tables()["TableNames"]
    elsewhere = boto3.client(
        "dynamodb",
        endpoint_url=dynamodb_endpoint,
        region_name="eu-central-1",
        aws_access_key_id="AKIAOTHERPROFILE",
        aws_secret_access_key="another-secret",
    )
    assert table in elsewhere.list_tables()["TableNames"]
