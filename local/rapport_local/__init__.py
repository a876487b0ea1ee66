"""rapport on one machine: DynamoDB Local, the handlers invoked as `sam local invoke` would, scenarios."""

from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[2]
