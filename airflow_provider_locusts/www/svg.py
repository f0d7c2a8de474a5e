"""A tiny SVG writer: every piece of text and every attribute value is XML-escaped here, so
plots built on it cannot carry markup from task ids, reasons or manager names."""

from __future__ import annotations

import math
from xml.sax.saxutils import escape, quoteattr

FONT = "font-family:system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',Arial,sans-serif"


def num(value: float) -> str:
    """A coordinate with at most one decimal: short files, no visible loss."""
    text = f"{value:.1f}"
    return text.removesuffix(".0")


def _attrs(attrs: dict[str, object]) -> str:
    parts = []
    for key, value in attrs.items():
        if value is None:
            continue
        if isinstance(value, float):
            value = num(value)
        parts.append(f" {key.rstrip('_').replace('_', '-')}={quoteattr(str(value))}")
    return "".join(parts)


class Svg:
    """Collects elements; `render()` returns one standalone, well-formed <svg> element."""

    def __init__(self, width: int, height: int, title: str, css: str = ""):
        self.width = width
        self.height = height
        self.title = title
        self.css = css
        self.parts: list[str] = []

    def rect(self, x: float, y: float, w: float, h: float, tooltip: str | None = None, **attrs) -> None:
        head = f"<rect x={quoteattr(num(x))} y={quoteattr(num(y))} width={quoteattr(num(w))} height={quoteattr(num(h))}{_attrs(attrs)}"
        if tooltip is None:
            self.parts.append(head + "/>")
        else:
            self.parts.append(f"{head}><title>{escape(tooltip)}</title></rect>")

    def line(self, x1: float, y1: float, x2: float, y2: float, **attrs) -> None:
        self.parts.append(
            f"<line x1={quoteattr(num(x1))} y1={quoteattr(num(y1))} x2={quoteattr(num(x2))} y2={quoteattr(num(y2))}{_attrs(attrs)}/>"
        )

    def polyline(self, points: list[tuple[float, float]], **attrs) -> None:
        coords = " ".join(f"{num(x)},{num(y)}" for x, y in points)
        self.parts.append(f"<polyline points={quoteattr(coords)} fill=\"none\"{_attrs(attrs)}/>")

    def text(self, x: float, y: float, content: str, **attrs) -> None:
        self.parts.append(f"<text x={quoteattr(num(x))} y={quoteattr(num(y))}{_attrs(attrs)}>{escape(content)}</text>")

    def raw_group(self, inner: list[str], **attrs) -> None:
        """A <g> around parts built by this class (already escaped)."""
        self.parts.append(f"<g{_attrs(attrs)}>" + "".join(inner) + "</g>")

    def render(self) -> str:
        style = f"<style>text{{{FONT};font-size:11px;fill:#333}}.title{{font-size:14px;font-weight:600;fill:#111}}.axis{{stroke:#888;stroke-width:1}}.grid{{stroke:#e4e4e4;stroke-width:1}}{self.css}</style>"
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {self.width} {self.height}" '
            f'width="{self.width}" height="{self.height}" role="img">'
            f"<title>{escape(self.title)}</title>{style}" + "".join(self.parts) + "</svg>"
        )


# --- ticks and units ----------------------------------------------------------------------


def nice_step(raw: float) -> float:
    """1, 2 or 5 times a power of ten, at least `raw`."""
    if raw <= 0 or not math.isfinite(raw):
        return 1.0
    exponent = math.floor(math.log10(raw))
    fraction = raw / 10**exponent
    for nice in (1, 2, 5, 10):
        if fraction <= nice + 1e-9:
            return nice * 10**exponent
    return 10 ** (exponent + 1)


def nice_ticks(high: float, target: int = 6) -> list[float]:
    """Ticks 0, step, 2·step … up to `high` (included when it falls on a tick)."""
    step = nice_step(high / max(target, 1)) if high > 0 else 1.0
    count = int(high / step + 1e-9)
    return [i * step for i in range(count + 1)]


def format_number(value: float) -> str:
    if abs(value - round(value)) < 1e-9:
        return f"{round(value):,}"
    return f"{value:.3g}"


TIME_UNITS = (("s", 1.0, 120.0), ("min", 60.0, 7200.0), ("h", 3600.0, 172800.0), ("d", 86400.0, math.inf))


def time_unit(span_seconds: float) -> tuple[str, float]:
    """The unit a time axis of this span reads best in: (name, seconds per unit)."""
    for name, seconds, up_to in TIME_UNITS:
        if span_seconds <= up_to:
            return name, seconds
    return "d", 86400.0


def format_duration(seconds: float) -> str:
    """850 ms, 12.3 s, 4.5 min, 2.1 h, 3.2 d."""
    if seconds < 1:
        return f"{seconds * 1000:.3g} ms"
    if seconds < 120:
        return f"{seconds:.3g} s"
    if seconds < 7200:
        return f"{seconds / 60:.3g} min"
    if seconds < 172800:
        return f"{seconds / 3600:.3g} h"
    return f"{seconds / 86400:.3g} d"
