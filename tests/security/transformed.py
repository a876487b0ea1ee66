"""The template as CloudFormation receives it: SAM's own translator (in the SAM CLI's environment), run
offline with the code locations replaced by S3 URIs, as `sam package` would. Prints the result as JSON."""

import json
import sys

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse


class NoManagedPolicies:
    """The template names no AWS managed policy by name, so none needs looking up."""

    def load(self) -> dict[str, str]:
        return {}


with open(sys.argv[1], encoding="utf-8") as source:
    template = yaml_parse(source.read())
for resource in template["Resources"].values():
    properties = resource.get("Properties", {})
    for uri in ("CodeUri", "ContentUri"):
        if isinstance(properties.get(uri), str):
            properties[uri] = "s3://packaged/code.zip"
print(json.dumps(transform(template, {}, NoManagedPolicies())))
