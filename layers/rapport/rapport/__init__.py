"""rapport: route each caller to the agent they most likely want, within the privacy rules that apply."""

__version__ = "0.1.0"

# Every module logs under this service, so one Powertools Logger configures them all.
SERVICE_NAME = "rapport"
