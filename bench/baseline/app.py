"""The baseline rapport is measured against: the least an SMA router can do.

Shaped like AWS's public call-forwarding sample: a module-level client with botocore's defaults, one
GetItem for the dialled number's forwarding target, a CallAndBridge to it, and the other leg hung up
when one leg hangs up. No routing, no privacy, no failover, no validation.
"""

import os
from typing import Any

import boto3

dynamodb = boto3.client("dynamodb")
TABLE_NAME = os.environ["TABLE_NAME"]


def lambda_handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    event_type = event["InvocationEventType"]
    participants = event["CallDetails"]["Participants"]
    if event_type == "NEW_INBOUND_CALL":
        leg = participants[0]
        item = dynamodb.get_item(
            TableName=TABLE_NAME, Key={"pk": {"S": f"FORWARD#{leg['To']}"}, "sk": {"S": "TARGET"}}
        )["Item"]
        endpoint = {"BridgeEndpointType": "AWS", "Arn": item["arn"]["S"], "Uri": item["target"]["S"]}
        bridge = {"CallTimeoutSeconds": 20, "CallerIdNumber": leg["To"], "Endpoints": [endpoint]}
        return {"SchemaVersion": "1.0", "Actions": [{"Type": "CallAndBridge", "Parameters": bridge}]}
    if event_type == "HANGUP":
        others = [p for p in participants if p.get("Status") == "Connected"]
        actions = [
            {"Type": "Hangup", "Parameters": {"CallId": p["CallId"], "SipResponseCode": "0"}} for p in others
        ]
        return {"SchemaVersion": "1.0", "Actions": actions}
    return {"SchemaVersion": "1.0", "Actions": []}
