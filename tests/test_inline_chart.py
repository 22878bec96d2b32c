"""Charts that Dagster's UI shows inline: under its 1,000-character bound, drawing the data."""

import re
import xml.etree.ElementTree as ET
from urllib.parse import unquote

import numpy as np
import pytest

from feature_assets.training import inline_chart

SVG = "{http://www.w3.org/2000/svg}"


def _svg(markdown: str) -> ET.Element:
    match = re.fullmatch(r"!\[[^\]]*\]\(data:image/svg\+xml,([^ ()#]+)\)", markdown)
    assert match, markdown[:80]
    return ET.fromstring(unquote(match.group(1)))


def _series(svg: ET.Element) -> np.ndarray:
    """The absolute points of the series path (the blue one)."""
    [path] = [p for p in svg.iter(f"{SVG}path") if p.get("stroke") == "#1f77b4"]
    start, moves = re.fullmatch(r"M(-?\d+,-?\d+)(?:l(.*))?", path.get("d")).groups()
    numbers = [int(n) for n in re.findall(r"-?\d+", f"{start},{moves or ''}")]
    return np.cumsum(np.array(numbers).reshape(-1, 2), axis=0)


def _labels(svg: ET.Element) -> list[str]:
    return [text.text for text in svg.iter(f"{SVG}text")]


def test_ten_years_of_days_fit_inline_thinned_with_both_ends_and_the_extremes_labelled():
    days = 3_000
    y = np.cumsum(np.random.default_rng(7).normal(-0.1, 3, days))
    markdown = inline_chart.chart("units won", np.arange(days), y, ("2016-01-01", "2025-12-31"))
    assert len(markdown) < inline_chart.INLINE_LIMIT
    svg = _svg(markdown)
    points = _series(svg)
    assert 20 <= len(points) < days
    assert points[0, 0] == 0 and points[-1, 0] == inline_chart.WIDTH
    assert np.all(np.diff(points[:, 0]) > 0)
    assert points[:, 1].min() >= 0 and points[:, 1].max() <= inline_chart.HEIGHT
    assert _labels(svg) == [
        "units won",
        "2016-01-01",
        f"{y.max():.0f}" if abs(y.max()) >= 1000 else f"{y.max():.3g}",
        f"{y.min():.0f}" if abs(y.min()) >= 1000 else f"{y.min():.3g}",
        "2025-12-31",
    ]


def test_the_path_follows_the_data_highest_at_the_top():
    y = np.array([0.0, 2.0, 1.0, 4.0])
    svg = _svg(inline_chart.chart("t", np.arange(4), y, ("a", "b")))
    points = _series(svg)
    assert list(points[:, 0]) == [0, 67, 133, 200]
    assert list(np.argsort(points[:, 1])) == list(np.argsort(-y))  # SVG y grows downwards


def test_a_level_outside_the_data_widens_the_axis_and_is_drawn_dashed():
    svg = _svg(inline_chart.chart("log loss", [0, 1], [0.5, 0.6], ("a", "b"), level=0.3))
    assert _labels(svg)[2:4] == ["0.6", "0.3"]
    [dashed] = [p for p in svg.iter(f"{SVG}path") if p.get("stroke-dasharray")]
    assert re.fullmatch(r"M0,\d+H200", dashed.get("d"))


def test_one_day_is_a_mark_mid_box_and_nothing_finite_says_so():
    svg = _svg(inline_chart.chart("t", [5], [1.0], ("2026-12-05", "2026-12-05")))
    [path] = [p for p in svg.iter(f"{SVG}path") if p.get("stroke") == "#1f77b4"]
    assert path.get("d") == "M96,30h8"
    assert _labels(svg).count("2026-12-05") == 1
    assert inline_chart.chart("t", [0, 1], [np.nan, np.nan], ("a", "b")) == inline_chart.NOTHING


@pytest.mark.parametrize("title", ["a & b < c", "reliability: 100% (test)"])
def test_titles_with_markup_or_url_characters_stay_valid(title):
    markdown = inline_chart.chart(title, [0, 1], [0, 1], ("0", "1"), diagonal=True)
    assert _labels(_svg(markdown))[0] == title
