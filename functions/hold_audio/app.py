"""Custom::HoldAudio: the hold clip in the stack's hold-audio bucket, so browser agents take calls as soon
as the stack is deployed.

Create and Update write `rapport.hold_audio.hold_clip(Seconds)` as the key, marked as rapport's own
(object metadata `rapport-clip: generated`), unless a clip of the team's own is there: that one is never
overwritten. Delete removes only rapport's own clip, so the stack can delete its (then empty) bucket,
and a team's clip stays. crhelper reports each outcome to CloudFormation's pre-signed ResponseURL.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

import boto3
from aws_lambda_powertools import Logger
from botocore.config import Config
from botocore.exceptions import ClientError
from crhelper import CfnResource
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from rapport.hold_audio import hold_clip
from rapport.signals import problems

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger()

_S3_CONFIG = Config(connect_timeout=3, read_timeout=10, retries={"mode": "standard", "total_max_attempts": 3})
MARK = {"rapport-clip": "generated"}


class HoldAudioProperties(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    bucket: str = Field(alias="Bucket", pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    key: str = Field(alias="Key", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
    seconds: int = Field(alias="Seconds", ge=1, le=600)


def read_properties(raw: object) -> HoldAudioProperties:
    try:
        return HoldAudioProperties.model_validate(raw)
    except ValidationError as error:
        raise ValueError(f"Invalid Custom::HoldAudio properties: {'; '.join(problems(error))}") from None


@cache
def s3() -> Any:
    return boto3.client("s3", config=_S3_CONFIG)


def _ours_or_absent(bucket: str, key: str) -> bool | None:
    """True: rapport's clip is there; None: nothing is; False: a clip of the team's own."""
    try:
        head = s3().head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    return bool(head.get("Metadata", {}).get("rapport-clip") == MARK["rapport-clip"])


def write_clip(event: dict[str, Any], _context: LambdaContext) -> str:
    wanted = read_properties(event.get("ResourceProperties"))
    physical_id = f"s3://{wanted.bucket}/{wanted.key}"
    if _ours_or_absent(wanted.bucket, wanted.key) is False:
        logger.info("a clip of the team's own is in place: left as it is", extra={"clip": physical_id})
        return physical_id
    s3().put_object(
        Bucket=wanted.bucket,
        Key=wanted.key,
        Body=hold_clip(wanted.seconds),
        ContentType="audio/wav",
        Metadata=MARK,
    )
    logger.info("hold clip written", extra={"clip": physical_id, "seconds": wanted.seconds})
    return physical_id


def remove_clip(event: dict[str, Any], _context: LambdaContext) -> None:
    physical_id = str(event.get("PhysicalResourceId", ""))
    if not physical_id.startswith("s3://"):
        return  # a create that failed before it wrote anything
    bucket, _, key = physical_id.removeprefix("s3://").partition("/")
    try:
        ours = _ours_or_absent(bucket, key)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "NoSuchBucket":
            return
        raise
    if ours:
        s3().delete_object(Bucket=bucket, Key=key)


helper = CfnResource(json_logging=False, log_level="INFO", boto_level="WARNING", sleep_on_delete=0)
helper.create(write_clip)
helper.update(write_clip)
helper.delete(remove_clip)


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> None:
    helper(event, context)
