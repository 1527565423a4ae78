"""`lsdctl segment`: parsing --thresholds."""

from __future__ import annotations

import pytest

from engine.errors import InputError
from lsdctl.cli import segment


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("0.1:0.9:0.1", [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]),
        ("0.05:0.5:0.15", [0.05, 0.2, 0.35, 0.5]),
        ("0.2:0.2:0.1", [0.2]),
        ("0.1:0.35:0.1", [0.1, 0.2, 0.3]),
        ("0.7, 0.3,0.5,", [0.3, 0.5, 0.7]),
        ("0.5,0.5", [0.5]),
        ("0.01:0.99:0.01", [round(i / 100, 2) for i in range(1, 100)]),
    ],
)
def test_thresholds_parse(text: str, values: list[float]) -> None:
    assert segment.parse_thresholds(text) == values


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("0.1:0.9", "START:STOP:STEP"),
        ("a,b", "START:STOP:STEP"),
        (",", "START:STOP:STEP"),
        ("0.1:0.9:nan", "START:STOP:STEP"),
        ("0.1:0.9:0", "step must be positive"),
        ("0.9:0.1:0.1", "stop 0.1 is below start 0.9"),
        ("0:1:0.1", "strictly between 0 and 1, got 0"),
        ("0.5,1.5", "strictly between 0 and 1, got 1.5"),
        ("0.101,0.104", "0.101 and 0.104 would both be segmentation_0.10"),
        ("0.1:0.9:0.0001", "gives 8001 values: at most 99"),
    ],
)
def test_bad_thresholds_refused(text: str, match: str) -> None:
    with pytest.raises(InputError, match=match):
        segment.parse_thresholds(text)
