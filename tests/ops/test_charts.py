"""The SVG charts: coordinates, axis labels, escaping, degenerate series."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from app.ops.charts import RatePoint, fmt_number, line_chart, win_rate_chart

NS = "{http://www.w3.org/2000/svg}"


def _xml(svg: str) -> ET.Element:
    """Parse our own SVG output (trusted: the function under test), failing if it is not well-formed."""
    return ET.fromstring(svg)  # noqa: S314


def _polyline(svg: str) -> str:
    root = _xml(svg)  # well-formed XML, or this raises
    line = root.find(f"{NS}polyline")
    assert line is not None
    return str(line.get("points"))


def test_points_map_onto_the_plot_area_in_order() -> None:
    # Plot area for 320x160 with margins (24, 12, 28, 52): x 52..308, y 132 (min) .. 24 (max).
    svg = line_chart([(0, 0.0), (10, 1.0), (5, 0.5)], "loss")
    assert _polyline(svg) == "52.0,132.0 308.0,24.0 180.0,78.0"


def test_axes_carry_min_and_max_labels_and_the_title() -> None:
    svg = line_chart([(100, 2.5), (300, -1.25)], "reward")
    root = _xml(svg)
    texts = [t.text for t in root.iter(f"{NS}text")]
    assert texts[0] == "reward"
    assert {"2.5", "-1.25", "100", "300"} <= set(texts)
    assert root.find(f"{NS}title").text == "reward"  # type: ignore[union-attr]
    assert len(root.findall(f"{NS}line")) == 2


def test_flat_series_sits_in_the_middle_and_non_finite_points_are_dropped() -> None:
    svg = line_chart([(1, 2.0), (2, float("nan")), (3, 2.0), (4, float("inf"))], "kl")
    assert _polyline(svg) == "52.0,78.0 308.0,78.0"


def test_single_point_draws_a_dot() -> None:
    svg = line_chart([(7, 0.3)], "acc")
    assert _polyline(svg) == "180.0,78.0"
    assert _xml(svg).find(f"{NS}circle") is not None


def test_empty_series_says_so() -> None:
    svg = line_chart([], "loss")
    assert "no data yet" in svg and "<polyline" not in svg


def test_text_is_escaped() -> None:
    evil = '<script>alert("x")</script> & co'
    svg = line_chart([(0, 1.0), (1, 2.0)], evil)
    assert "<script>" not in svg
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co" in svg
    assert _xml(svg).find(f"{NS}title").text == evil  # type: ignore[union-attr]
    rate = win_rate_chart([RatePoint(evil, 0.5, 0.4, 0.6, 10)], evil)
    assert "<script>" not in rate
    _xml(rate)


def test_long_series_are_thinned_but_keep_the_last_point() -> None:
    pts = [(i, float(i % 7)) for i in range(2001)]
    coords = _polyline(line_chart(pts, "long")).split()
    assert len(coords) <= 402
    assert coords[-1].startswith("308.0,")


def test_win_rate_chart_places_dot_and_whisker_on_a_0_to_1_axis() -> None:
    # Axis from x=180 to x=624 at the default width 640.
    svg = win_rate_chart(
        [RatePoint("v2 vs v1", 0.75, 0.5, 1.0, 12), RatePoint("v3 vs v2", None, None, None, 0)], "Figure 1"
    )
    root = _xml(svg)
    dot = root.find(f"{NS}circle")
    assert dot is not None and dot.get("cx") == "513.0"
    whisker = [ln for ln in root.iter(f"{NS}line") if ln.get("class") == "whisker"]
    assert [(w.get("x1"), w.get("x2")) for w in whisker] == [("402.0", "624.0")]
    assert "no comparisons yet" in svg
    long = win_rate_chart([RatePoint("a-very-long-policy-version-name-r12", 0.5, 0.4, 0.6, 3)], "t")
    assert "a-very-long-policy-versio\u2026<title>a-very-long-policy-version-name-r12</title>" in long
    assert re.search(r'class="even" x1="402.0"', svg)


def test_fmt_number() -> None:
    assert fmt_number(0) == "0"
    assert fmt_number(0.0002605) == "2.6e-4"  # was "0.0002605", cut to "0002605" on the axis
    assert fmt_number(0.000123456) == "1.23e-4" and fmt_number(-0.0039) == "-3.9e-3"
    assert fmt_number(123456.0) == "123k" and fmt_number(2_500_000) == "2.5M" and fmt_number(1234.5) == "1234"
    assert fmt_number(0.7812) == "0.781" and fmt_number(-12.345) == "-12.3"
    for v in (0.0002605, -0.000123456, 0.5, 12.5, -1234.5, 98765.4, -3.2e7, 1e-12):
        assert len(fmt_number(v)) <= 8, v  # fits the 48 px left of the axis at the 10 px tick font
