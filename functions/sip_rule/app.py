"""Custom::SipRule: the SIP rule that sends a phone number's calls to the stack's SIP media application.

CloudFormation has no SIP-rule type, so this Lambda-backed custom resource calls the chime-sdk-voice API:
Create makes the rule; Update points it at the SIP media application again in place, or makes a new rule
when the number changes (CloudFormation then deletes the old one by its physical id); Delete disables the
rule, then deletes it. crhelper reports each outcome to CloudFormation's pre-signed ResponseURL, failures
with a reason.

IAM lets the function read and delete any SIP rule in the account (those actions take no resource), so the
function keeps to its own: before it changes or deletes a rule it reads it, and goes on only if the rule
bears the name, and targets only the SIP media application, that the template put in its environment.
The event cannot widen that: whoever can invoke the function writes the event, properties and all.
A Delete naming another rule succeeds without touching it (CloudFormation only sends ids this function
returned, so such a Delete is forged, or the rule was changed by hand, and failing would hold up the
stack's deletion for good); an Update naming one fails, with the reason.
"""

from __future__ import annotations

import logging
from functools import cache
from typing import TYPE_CHECKING, Any

import boto3
from aws_lambda_powertools import Logger
from botocore.config import Config
from crhelper import CfnResource
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mypy_boto3_chime_sdk_voice import ChimeSDKVoiceClient
    from mypy_boto3_chime_sdk_voice.type_defs import SipRuleTargetApplicationTypeDef, SipRuleTypeDef

logger = Logger()

# CloudFormation waits for us, but not forever: fail within the function's 60 s rather than hang.
_VOICE_CONFIG = Config(
    connect_timeout=3, read_timeout=10, retries={"mode": "standard", "total_max_attempts": 3}
)


class SipRuleSettings(BaseSettings):
    """The one rule this function manages, as the template names it; never read from an event."""

    model_config = SettingsConfigDict(env_prefix="RAPPORT_", extra="ignore", frozen=True)

    sip_media_application_id: str = Field(min_length=1)
    sip_rule_name: str = Field(min_length=1)


@cache
def settings() -> SipRuleSettings:
    """The function's settings, validated from its environment once per container."""
    return SipRuleSettings()


class ForeignRuleError(Exception):
    """The physical id names a SIP rule that this stack does not manage."""


class SipRuleProperties(BaseModel):
    """The resource's properties as the template passes them (CloudFormation sends strings)."""

    # ServiceToken (and ServiceTimeout, when set) arrive as properties too; they are not ours to check.
    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(alias="Name", min_length=1, max_length=256, pattern=r"^[a-zA-Z0-9 _.-]+$")
    phone_number: str = Field(alias="PhoneNumber", pattern=r"^\+[1-9][0-9]{6,14}$")
    sip_media_application_id: str = Field(alias="SipMediaApplicationId", pattern=r"^\S+$")
    aws_region: str = Field(alias="AwsRegion", pattern=r"^[a-z]{2}(-[a-z]+)+-[0-9]+$")

    def target_applications(self) -> list[SipRuleTargetApplicationTypeDef]:
        """The rule's single target: this stack's SIP media application."""
        return [
            {
                "SipMediaApplicationId": self.sip_media_application_id,
                "Priority": 1,
                "AwsRegion": self.aws_region,
            }
        ]


def read_properties(raw: object) -> SipRuleProperties:
    """Validate the properties; raise ValueError with a reason CloudFormation can show the user."""
    try:
        return SipRuleProperties.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc']) or 'properties'}: {problem['msg']}"
            for problem in error.errors(include_url=False)
        )
        raise ValueError(f"Invalid Custom::SipRule properties: {problems}") from None


def read_own_properties(raw: object) -> SipRuleProperties:
    """Validate the properties and check that they describe this function's own rule (else ValueError).

    A rule under another name or for another SMA would be one this function then refuses to touch.
    """
    properties = read_properties(raw)
    owner = settings()
    if (properties.name, properties.sip_media_application_id) != (
        owner.sip_rule_name,
        owner.sip_media_application_id,
    ):
        raise ValueError(
            "Invalid Custom::SipRule properties: this function manages only the rule named"
            f" {owner.sip_rule_name} for SIP media application {owner.sip_media_application_id}"
        )
    return properties


def is_own_rule(rule: SipRuleTypeDef, owner: SipRuleSettings) -> bool:
    """Whether a rule is the one this stack manages: its name, and this stack's SMA as its only target."""
    targets = rule.get("TargetApplications") or []
    return (
        rule.get("Name") == owner.sip_rule_name
        and bool(targets)
        and all(target.get("SipMediaApplicationId") == owner.sip_media_application_id for target in targets)
    )


@cache
def voice_client() -> ChimeSDKVoiceClient:
    """The chime-sdk-voice client, made once per container, in the function's own region."""
    return boto3.client("chime-sdk-voice", config=_VOICE_CONFIG)


def create_rule(event: dict[str, Any], _context: LambdaContext) -> str:
    """Create the rule for the event's properties; its id becomes the physical id. One API call."""
    return _create(read_own_properties(event.get("ResourceProperties")))


def update_rule(event: dict[str, Any], _context: LambdaContext) -> str:
    """Point the rule at the SMA again in place, or create a new one for a new number. Two API calls.

    The number is the rule's own (read first), not the event's OldResourceProperties.
    """
    properties = read_own_properties(event.get("ResourceProperties"))
    rule_id: str = event["PhysicalResourceId"]
    current = read_own_rule(rule_id)
    if current is None:
        # Deleted outside CloudFormation: put it back rather than fail every future update.
        logger.warning("SIP rule no longer exists: creating it again", extra={"old_sip_rule_id": rule_id})
        return _create(properties)
    if current.get("TriggerValue") != properties.phone_number:
        # A new physical id tells CloudFormation to delete the old rule once the update has succeeded.
        logger.info("Phone number changed: creating a new SIP rule", extra={"old_sip_rule_id": rule_id})
        return _create(properties)
    voice_client().update_sip_rule(
        SipRuleId=rule_id,
        Name=properties.name,
        Disabled=False,
        TargetApplications=properties.target_applications(),
    )
    logger.info("SIP rule updated", extra={"sip_rule_id": rule_id})
    cfn_resource().Data["SipRuleId"] = rule_id
    return rule_id


def delete_rule(event: dict[str, Any], _context: LambdaContext) -> None:
    """Disable, then delete the rule; a rule that is gone or was never made counts as deleted.

    Reads the rule first, so that deletion depends on nothing in the event's properties, and leaves a rule
    that is not this stack's alone (see the module's docstring). Up to three API calls.
    """
    rule_id: str = event["PhysicalResourceId"]
    if _is_placeholder_id(event):
        logger.info("Create had failed, so there is no SIP rule to delete")
        return
    client = voice_client()
    try:
        rule = read_own_rule(rule_id)
        if rule is None:
            logger.info("SIP rule already deleted", extra={"sip_rule_id": rule_id})
            return
        if not rule.get("Disabled", False):
            # Chime refuses to delete an enabled rule.
            client.update_sip_rule(SipRuleId=rule_id, Name=rule["Name"], Disabled=True)
        client.delete_sip_rule(SipRuleId=rule_id)
    except ForeignRuleError:
        return  # logged as an error by read_own_rule; this stack has no rule left to delete
    except client.exceptions.NotFoundException:
        logger.info("SIP rule already deleted", extra={"sip_rule_id": rule_id})
        return
    logger.info("SIP rule deleted", extra={"sip_rule_id": rule_id})


def read_own_rule(rule_id: str) -> SipRuleTypeDef | None:
    """The rule behind a physical id if it is this stack's, None if it no longer exists. One API call.

    Raises ForeignRuleError, and logs an error, for any other rule: IAM would let the function change it.
    """
    client = voice_client()
    try:
        rule = client.get_sip_rule(SipRuleId=rule_id)["SipRule"]
    except client.exceptions.NotFoundException:
        return None
    owner = settings()
    if not is_own_rule(rule, owner):
        # Only the id: the rule's number (its trigger) stays out of the logs.
        logger.error("SIP rule is not this stack's: left as it is", extra={"sip_rule_id": rule_id})
        raise ForeignRuleError(
            f"SIP rule {rule_id} is not this stack's (named {owner.sip_rule_name}, for SIP media"
            f" application {owner.sip_media_application_id} only): left as it is"
        )
    return rule


def _create(properties: SipRuleProperties) -> str:
    response = voice_client().create_sip_rule(
        Name=properties.name,
        TriggerType="ToPhoneNumber",
        TriggerValue=properties.phone_number,
        TargetApplications=properties.target_applications(),
        Disabled=False,
    )
    rule_id = response["SipRule"]["SipRuleId"]
    logger.info("SIP rule created", extra={"sip_rule_id": rule_id})
    cfn_resource().Data["SipRuleId"] = rule_id
    return rule_id


def _is_placeholder_id(event: dict[str, Any]) -> bool:
    """Whether the physical id is crhelper's stand-in after a failed Create: <stack>_<logical-id>_<8 chars>.

    CloudFormation sends a Delete for it when it rolls back; no rule exists behind it.
    """
    stack_name = event["StackId"].split("/")[1]
    prefix = f"{stack_name}_{event['LogicalResourceId']}_"
    physical_id: str = event["PhysicalResourceId"]
    return physical_id.startswith(prefix) and len(physical_id) == len(prefix) + 8


@cache
def cfn_resource() -> CfnResource:
    """crhelper's request handler, made once per container (it builds boto3 clients of its own)."""
    resource = CfnResource(
        # crhelper sets the root logger's level (its default is DEBUG, which would log whole events).
        log_level=logging.getLevelName(logger.log_level),
        # crhelper may wait up to 120 s on Delete for logs to flush; nothing here needs that wait.
        sleep_on_delete=0,
    )
    resource.create(create_rule)
    resource.update(update_rule)
    resource.delete(delete_rule)
    return resource


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> None:
    """Handle one CloudFormation request for Custom::SipRule; crhelper sends the response."""
    logger.append_keys(request_type=event.get("RequestType"), logical_id=event.get("LogicalResourceId"))
    cfn_resource()(event, context)
