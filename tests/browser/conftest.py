"""Fixtures of the agent page's tests: the page's script built, and the desk behind the page."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser.page_desk import PROJECT_DIR, RING_SECONDS, SITE, Desk
from builders import RouterFactory
from rapport.store.dynamodb import DynamoStore


@pytest.fixture(scope="session")
def bundle() -> Path:
    """The page's script, built as `make setup` builds it (npm run build:agent-page)."""
    subprocess.run(["npm", "run", "-s", "build:agent-page"], cwd=PROJECT_DIR, check=True)
    return SITE / "dist" / "agent-page.js"


@pytest.fixture
def desk(
    dynamodb_endpoint: str, table: str, store: DynamoStore, make_router: RouterFactory
) -> Iterator[Desk]:
    router = make_router(
        environment={
            "RAPPORT_HOLD_AUDIO_BUCKET": "rapport-hold-audio",
            "RAPPORT_RING_TIMEOUT_SECONDS": str(RING_SECONDS),
        }
    )
    running = Desk(dynamodb_endpoint, table, store, router)
    yield running
    running.close()
