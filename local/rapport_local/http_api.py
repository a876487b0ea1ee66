"""HTTP API events as API Gateway (payload format 2.0, IAM authorisation) hands them to a function."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

LOCAL_PRINCIPAL = "arn:aws:sts::123456789012:assumed-role/privacy-desk/rapport-local"


def http_request(path: str, body: object, principal: str = LOCAL_PRINCIPAL) -> dict[str, Any]:
    """A `POST path` request with a JSON body, signed by `principal` (the IAM authoriser's userArn)."""
    text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
    now = time.time()
    return {
        "version": "2.0",
        "routeKey": f"POST {path}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json", "content-length": str(len(text.encode()))},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abcdef1234",
            "authorizer": {
                "iam": {
                    "accessKey": "ASIAEXAMPLEKEY",
                    "accountId": "123456789012",
                    "callerId": "AROAEXAMPLEID:rapport-local",
                    "cognitoIdentity": None,
                    "principalOrgId": None,
                    "userArn": principal,
                    "userId": "AROAEXAMPLEID:rapport-local",
                }
            },
            "domainName": "abcdef1234.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abcdef1234",
            "http": {
                "method": "POST",
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.10",
                "userAgent": "rapport-local",
            },
            "requestId": uuid.uuid4().hex[:16],
            "routeKey": f"POST {path}",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "body": text,
        "isBase64Encoded": False,
    }
