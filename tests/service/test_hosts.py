"""Which addresses count as local for serve's no-token rule."""

from __future__ import annotations

import pytest

from smithers.service.server import is_loopback


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("example.com", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    """Only loopback addresses count as local for serve's no-token rule."""
    assert is_loopback(host) is loopback
