"""Console pieces that need no server: cookie signing, the SVG charts, the number formats."""

from __future__ import annotations

import time

import pytest

from services.gateway.console.auth import Signer
from services.gateway.console.charts import Point, line_chart
from services.gateway.console.pages import dash, duration


def test_signed_tokens_round_trip_and_refuse_tampering_other_keys_and_expiry() -> None:
    signer = Signer(b"k" * 32)
    token = signer.dumps({"k": "id", "csrf": "t"}, ttl_s=60)
    body, mac = token.split(".")
    assert signer.loads(token) is not None and signer.loads(token)["k"] == "id"  # type: ignore[index]
    assert signer.loads(f"{body}x.{mac}") is None and signer.loads(body) is None
    assert Signer(b"other" * 8).loads(token) is None
    assert signer.loads(None) is None and signer.loads("not.base64!") is None
    assert signer.loads(signer.dumps({"k": "id"}, ttl_s=-1)) is None
    assert signer.loads(signer.dumps({"k": "id"}, ttl_s=1))["exp"] <= time.time() + 1  # type: ignore[index]


def test_chart_draws_measured_points_with_links_and_escapes_labels() -> None:
    svg = str(line_chart("Accuracy <per> version", [
        Point("v0", 0.25, 0.05, "/console/societies#v0"), Point("v1", None),
        Point("<b>", 0.5, None, "/x?a=1&b=2")], y_max=1.0))
    assert svg.startswith("<svg") and svg.count("<circle") == 2
    assert "Accuracy &lt;per&gt; version" in svg and "&lt;b&gt;" in svg and "<b>" not in svg
    assert 'href="/console/societies#v0"' in svg and "a=1&amp;b=2" in svg
    assert "v0: 0.250 ± 0.050" in svg and 'class="err"' in svg
    assert "no data" in str(line_chart("Empty", [Point("v0", None)]))


@pytest.mark.parametrize(("value", "text"), [(None, "–"), ("", "–"), (0.5, "0.500"), (3, "3")])
def test_dash(value: object, text: str) -> None:
    assert dash(value) == text


def test_duration() -> None:
    assert [duration(s) for s in (None, 4.4, 125, 7260)] == ["–", "4 s", "2 min 5 s",
                                                             "2 h 1 min"]
