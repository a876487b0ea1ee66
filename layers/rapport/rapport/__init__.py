"""rapport: route each caller to the agent they most likely want, within the privacy rules that apply."""

__version__ = "0.1.0"
