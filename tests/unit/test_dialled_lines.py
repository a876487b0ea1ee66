"""The `DialledLines` setting: which of the deployment's numbers are product lines."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from rapport.settings import Settings


def settings(lines: str) -> Settings:
    """Settings as a function reads them: from the environment the template sets."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TABLE_NAME", "rapport-test")
        env.setenv("RAPPORT_DIALLED_LINES", lines)
        return Settings()


def test_lines_are_read_from_json_and_found_by_number_in_order() -> None:
    configured = settings(
        '{"+18005550111": {"name": "routers", "products": ["mesh-router-m3"]},'
        ' "+18005550122": {"name": "headphones", "products": ["x200-headphones", "soundbar-s5"]}}'
    )
    line = configured.line_for(None, "+18005550122")
    assert line is not None and (line.name, line.products) == (
        "headphones",
        ("x200-headphones", "soundbar-s5"),
    )
    routers = configured.line_for("+18005550111", "+18005550122")  # the diverted-from number comes first
    assert routers is not None and routers.name == "routers"
    assert configured.line_for("+12125550143", None) is None


@pytest.mark.parametrize(
    ("lines", "problem"),
    [
        ('{"0800 555 0111": {"name": "routers", "products": ["m3"]}}', "E.164"),
        ('{"+18005550111": {"name": "Routers!", "products": ["m3"]}}', "name"),
        ('{"+18005550111": {"name": "routers", "products": []}}', "products"),
        ('{"+18005550111": {"name": "routers", "products": ["m3"], "queue": "q"}}', "queue"),
    ],
)
def test_a_bad_line_is_refused_with_what_is_wrong(lines: str, problem: str) -> None:
    with pytest.raises(ValidationError) as refused:
        settings(lines)
    assert problem in str(refused.value)
