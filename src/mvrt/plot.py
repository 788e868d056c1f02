"""The paper's Fig. 11: per-class probability over time with the video's frames under the curves.

One panel per video, stacked: the per-class softmax probability of every window (the numbers
the table shows) at the window's centre, or the per-class sigmoids when asked (labelled so),
over a strip of thumbnails of the frames at evenly spaced times. A video of one window shows
its six probabilities as bars over the one frame in its middle; a live source that kept no
windows shows the mean of its windows; a failed video gets one line with its error. The
legend stands outside the axes, on the right, and a class has the same colour in every panel.

The layout is fixed in inches (no tight bounding box), so the image size depends only on the
panels: `FIGURE_WIDTH_INCHES` wide, `HEADER_INCHES` plus each panel's height high. The image is
rendered in memory with the Agg canvas (no pyplot, no global backend switch) and written whole
or not at all (temporary file, then rename).
"""

from __future__ import annotations

import importlib.util
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from mvrt._thumbnails import ThumbnailStrip, display_aspect, grab_strip, strip_count, strip_times
from mvrt.errors import MissingDependencyError, UsageError
from mvrt.files import write_atomic
from mvrt.runtime.results import VideoResult

# Panels drawn at most; beyond, the header says how many were left out.
MAX_PANELS = 12
DPI = 100
FIGURE_WIDTH_INCHES = 11.0
HEADER_INCHES = 0.65
LEFT_INCHES, LEGEND_INCHES = 0.8, 1.9
TITLE_INCHES, CURVES_INCHES, GAP_INCHES, STRIP_INCHES, AXIS_LABEL_INCHES = 0.3, 2.2, 0.06, 0.85, 0.5
PANEL_INCHES = TITLE_INCHES + CURVES_INCHES + GAP_INCHES + STRIP_INCHES + AXIS_LABEL_INCHES + 0.15
ERROR_PANEL_INCHES = 0.45
BAR_LABEL_INCHES = 0.3
AXES_WIDTH_INCHES = FIGURE_WIDTH_INCHES - LEFT_INCHES - LEGEND_INCHES
# Headroom so that curves at exactly 0 or 1 are not hidden by the frame.
Y_LIMITS = (-0.04, 1.04)
FORMATS = ("png", "pdf", "svg")
_MARKERS_UP_TO = 60  # windows; beyond, the curves are drawn without markers
_THUMBNAIL_HEIGHT_PX = 96


def require_matplotlib() -> None:
    """Fail early (before any inference) when matplotlib is missing."""
    if importlib.util.find_spec("matplotlib") is None:
        raise MissingDependencyError("matplotlib", "plot", "plotting")


def plot_format(path: str | os.PathLike) -> str:
    """The image format named by `path`'s suffix (none: png); a UsageError for any other."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if not suffix:
        return "png"
    if suffix not in FORMATS:
        raise UsageError(f"{os.fspath(path)}: cannot draw a plot as .{suffix}; use .png, .pdf or .svg")
    return suffix


def plot_timeline(videos: Sequence[VideoResult], path: str | os.PathLike, *, title_note: str = "",
                  sigmoids: bool = False) -> Path:
    """Draw one panel per video (at most `MAX_PANELS`) into `path`; returns the path written.

    `sigmoids=True` plots the per-class sigmoids (each class scored on its own) instead of the
    softmax probabilities. Thumbnails are decoded again from each video's file; a source that
    cannot be read again (stdin, a URL, a file gone) is drawn without them, with a note.
    """
    require_matplotlib()
    fmt = plot_format(path)
    figure = build_figure(videos, title_note=title_note, sigmoids=sigmoids)
    image = io.BytesIO()
    figure.savefig(image, format=fmt, dpi=DPI)
    write_atomic(os.fspath(path), image.getvalue())
    return Path(path)


def build_figure(videos: Sequence[VideoResult], *, title_note: str = "", sigmoids: bool = False):
    """The matplotlib Figure of `plot_timeline` (not saved)."""
    from matplotlib.figure import Figure

    videos = list(videos)
    shown = videos[:MAX_PANELS]
    panels = [_Panel.of(video) for video in shown] or [_Panel("empty", None)]
    height = HEADER_INCHES + sum(p.height_inches for p in panels)
    figure = Figure(figsize=(FIGURE_WIDTH_INCHES, height), dpi=DPI)
    page = _Page(figure, height)
    colours = _class_colours(shown)
    _header(page, len(videos), len(shown), title_note, sigmoids)
    top = height - HEADER_INCHES
    for panel in panels:
        panel.draw(page, top, colours, sigmoids)
        top -= panel.height_inches
    _legend(page, colours)
    return figure


@dataclass(frozen=True)
class _Page:
    """Places axes and text by inches from the figure's bottom-left corner."""

    figure: object
    height_inches: float

    def axes(self, bottom_inches: float, height_inches: float):
        return self.figure.add_axes((LEFT_INCHES / FIGURE_WIDTH_INCHES, bottom_inches / self.height_inches,
                                     AXES_WIDTH_INCHES / FIGURE_WIDTH_INCHES, height_inches / self.height_inches))

    def text(self, x_inches: float, y_inches: float, text: str, **style):
        return self.figure.text(x_inches / FIGURE_WIDTH_INCHES, y_inches / self.height_inches, text, **style)


@dataclass(frozen=True)
class _Panel:
    """What one video's panel shows: "timeline", "bars" (one window), "mean" (live), "error", "empty"."""

    kind: str
    video: VideoResult | None

    @staticmethod
    def of(video: VideoResult) -> "_Panel":
        if not video.ok:
            return _Panel("error", video)
        if len(video.windows) >= 2:
            return _Panel("timeline", video)
        if len(video.windows) == 1:
            return _Panel("bars", video)
        return _Panel("mean" if video.count else "empty", video)

    @property
    def height_inches(self) -> float:
        return ERROR_PANEL_INCHES if self.kind in ("error", "empty") else PANEL_INCHES

    def draw(self, page: _Page, top_inches: float, colours: dict[str, tuple], sigmoids: bool) -> None:
        if self.kind in ("error", "empty"):
            _draw_message(page, top_inches, self.video)
            return
        curves_bottom = top_inches - TITLE_INCHES - CURVES_INCHES
        strip = page.axes(curves_bottom - GAP_INCHES - STRIP_INCHES, STRIP_INCHES)
        # Bars name their classes under the axis: leave room for those labels above the strip.
        room = 0.0 if self.kind == "timeline" else BAR_LABEL_INCHES
        curves = page.axes(curves_bottom + room, CURVES_INCHES - room)
        _panel_title(curves, self.video)
        if self.kind == "timeline":
            span = _draw_curves(curves, self.video, colours, sigmoids)
        else:
            span = _draw_bars(curves, self.video, colours, sigmoids)
        _draw_strip(strip, self.video, span, self.kind)


def _class_colours(videos: Sequence[VideoResult]) -> dict[str, tuple]:
    """One tab10 colour per class name, in order of first appearance: the same in every panel."""
    from matplotlib import colormaps

    palette = colormaps["tab10"].colors
    names: list[str] = []
    for video in videos:
        names += [c for c in video.classes if c not in names]
    return {name: palette[i % len(palette)] for i, name in enumerate(names)}


def _header(page: _Page, total: int, shown: int, title_note: str, sigmoids: bool) -> None:
    what = ("Per-class sigmoid per window (each class scored on its own; the table shows softmax)"
            if sigmoids else "Per-class softmax probability per window (the table's numbers)")
    notes = [n for n in (title_note, f"first {shown} of {total} videos shown" if total > shown else "") if n]
    top = page.height_inches - 0.12
    page.text(LEFT_INCHES, top, what, fontsize=11, fontweight="bold", va="top")
    if notes:
        page.text(LEFT_INCHES, top - 0.25, " · ".join(notes), fontsize=9, va="top", color="0.3")


def _legend(page: _Page, colours: dict[str, tuple]) -> None:
    from matplotlib.lines import Line2D

    if not colours:
        return
    handles = [Line2D([], [], color=c, marker="o", markersize=5, linewidth=2) for c in colours.values()]
    anchor = ((FIGURE_WIDTH_INCHES - LEGEND_INCHES + 0.15) / FIGURE_WIDTH_INCHES,
              (page.height_inches - HEADER_INCHES - TITLE_INCHES) / page.height_inches)
    page.figure.legend(handles, list(colours), loc="upper left", bbox_to_anchor=anchor, frameon=False,
                       fontsize=9, title="class", title_fontsize=9, alignment="left")


def _name(video: VideoResult) -> str:
    from mvrt.runtime.sources import is_url

    if video.path == "-":
        return "stdin"
    if is_url(video.path):
        return video.path
    return os.path.basename(video.path.rstrip("/")) or video.path


def _panel_title(ax, video: VideoResult) -> None:
    mean = video.probabilities
    best = int(np.argmax(mean))
    ax.set_title(f"{_name(video)}: {video.classes[best]} (whole video, mean probability {mean[best]:.2f})",
                 loc="left", fontsize=10)
    ax.set_title(f"{video.count} window{'s' if video.count != 1 else ''}", loc="right", fontsize=9, color="0.35")


def _values(windows, sigmoids: bool) -> np.ndarray:
    """(windows, classes): softmax probabilities, or sigmoids."""
    return np.array([w.sigmoids if sigmoids else w.probabilities for w in windows], dtype=np.float64)


def _draw_curves(ax, video: VideoResult, colours: dict[str, tuple], sigmoids: bool) -> tuple[float, float]:
    """One line per class through the window centres; returns the time span drawn (seconds)."""
    windows = sorted(video.windows, key=lambda w: w.start_seconds)
    centres = [(w.start_seconds + w.end_seconds) / 2 for w in windows]
    values = _values(windows, sigmoids)
    marker = "o" if len(windows) <= _MARKERS_UP_TO else None
    for c, name in enumerate(video.classes):
        ax.plot(centres, values[:, c], color=colours[name], marker=marker, markersize=3.5, linewidth=1.6,
                clip_on=False)
    span = (min(w.start_seconds for w in windows), max(w.end_seconds for w in windows))
    ax.set_xlim(*span)
    ax.tick_params(labelbottom=False)
    _probability_axis(ax, sigmoids)
    return span


def _draw_bars(ax, video: VideoResult, colours: dict[str, tuple], sigmoids: bool) -> tuple[float, float]:
    """One window (or a live source's mean): a bar per class with its value written on it."""
    if video.windows:
        window = video.windows[0]
        values, span = _values(video.windows, sigmoids)[0], (window.start_seconds, window.end_seconds)
    else:  # a live source keeps only the mean of the softmax probabilities
        values, span = np.asarray(video.probabilities, np.float64), (0.0, 0.0)
        sigmoids = False
    x = np.arange(len(video.classes))
    ax.bar(x, values, color=[colours[n] for n in video.classes], width=0.6)
    for xi, v in zip(x, values):
        ax.text(xi, min(v, 1.0) + 0.02, f"{v:.2f}", ha="center", va="bottom", fontsize=9)
    ax.set_xticks(x, video.classes, fontsize=9)
    ax.set_xlim(-0.6, len(x) - 0.4)
    _probability_axis(ax, sigmoids, top=1.15)
    if not video.windows:
        ax.set_ylabel("mean softmax probability")
    return span


def _probability_axis(ax, sigmoids: bool, top: float = Y_LIMITS[1]) -> None:
    ax.set_ylim(Y_LIMITS[0], top)
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.set_ylabel("sigmoid (per class)" if sigmoids else "softmax probability")
    ax.grid(alpha=0.3)
    ax.set_axisbelow(True)


def _draw_strip(ax, video: VideoResult, span: tuple[float, float], kind: str) -> None:
    """The thumbnails under the curves, at evenly spaced times over `span`, or a note."""
    ax.set_yticks([])
    ax.set_ylim(0, 1)
    if kind == "mean":
        ax.set_axis_off()
        _strip_note(ax, "no thumbnails and no timeline: a live source keeps only the mean of its windows")
        return
    ax.set_xlim(*span)
    width = _window_seconds(video)
    if kind == "timeline":
        ax.set_xlabel(f"time (s) · each point is one {width:g}-s window, at its centre", fontsize=9)
    else:
        ax.set_xlabel(f"time (s) · the video's one window spans {span[0]:g}-{span[1]:g} s", fontsize=9)
    strip = _grab(video.path, span, 1 if kind == "bars" else MAX_PANELS)
    if strip.note is not None:
        _strip_note(ax, strip.note)
        return
    for thumbnail in strip.thumbnails:
        _place(ax, thumbnail.image, thumbnail.seconds, span, len(strip.thumbnails))


def _grab(path: str, span: tuple[float, float], limit: int) -> ThumbnailStrip:
    aspect = display_aspect(path)
    count = strip_count(aspect or 1.0, AXES_WIDTH_INCHES, STRIP_INCHES * 0.92, limit)
    return grab_strip(path, strip_times(span[0], span[1], count), _THUMBNAIL_HEIGHT_PX)


def _place(ax, image: np.ndarray, centre_seconds: float, span: tuple[float, float], count: int) -> None:
    """Draw `image` centred at `centre_seconds`, at its own aspect, inside its slot of the strip."""
    aspect = image.shape[1] / image.shape[0]
    slot_inches = AXES_WIDTH_INCHES / count
    width_inches = min(STRIP_INCHES * 0.92 * aspect, slot_inches * 0.96)
    height_fraction = width_inches / aspect / STRIP_INCHES
    seconds_per_inch = (span[1] - span[0]) / AXES_WIDTH_INCHES
    half = width_inches * seconds_per_inch / 2
    ax.imshow(image, extent=(centre_seconds - half, centre_seconds + half,
                             0.5 - height_fraction / 2, 0.5 + height_fraction / 2),
              aspect="auto", interpolation="antialiased", zorder=2)
    ax.set_xlim(*span)
    ax.set_ylim(0, 1)


def _strip_note(ax, note: str) -> None:
    ax.text(0.5, 0.5, note, transform=ax.transAxes, ha="center", va="center", fontsize=9, color="0.4")


def _window_seconds(video: VideoResult) -> float:
    return round(float(np.median([w.end_seconds - w.start_seconds for w in video.windows])), 2)


def _draw_message(page: _Page, top_inches: float, video: VideoResult | None) -> None:
    """One line for a video without curves: its error, or that it had no windows."""
    if video is None:
        text, colour = "no videos to plot", "0.3"
    elif not video.ok:
        error = video.error if len(video.error) <= 160 else video.error[:157] + "..."
        text, colour = f"{_name(video)}: failed: {error}", "firebrick"
    else:
        text, colour = f"{_name(video)}: no windows read", "0.3"
    page.text(LEFT_INCHES, top_inches - ERROR_PANEL_INCHES / 2, text, fontsize=9, va="center", color=colour)
