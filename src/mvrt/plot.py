"""The paper's Fig. 11: per-class sigmoid curves over time, one panel per video."""

from __future__ import annotations

import importlib.util
import io
import os
from pathlib import Path

from mvrt.errors import MissingDependencyError
from mvrt.files import write_atomic
from mvrt.runtime.results import VideoResult


def require_matplotlib() -> None:
    """Fail early (before any inference) when matplotlib is missing."""
    if importlib.util.find_spec("matplotlib") is None:
        raise MissingDependencyError("matplotlib", "plot", "--plot")


def plot_timeline(videos: list[VideoResult], path: str | os.PathLike, *, title_note: str = "") -> None:
    """Draw each successful video's per-class curves (sigmoid, %) against window centre time.

    The image is written whole or not at all (temporary file, then rename).
    """
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    shown = [v for v in videos if v.ok and v.windows]
    fig, axes = plt.subplots(len(shown) or 1, 1, figsize=(10, 3.2 * max(1, len(shown))), squeeze=False)
    for ax, video in zip(axes[:, 0], shown):
        _draw(ax, video)
    if title_note:
        fig.suptitle(title_note, fontsize=9)
    fig.tight_layout()
    image = io.BytesIO()
    fig.savefig(image, dpi=110, format=Path(path).suffix.lstrip(".").lower() or "png")
    plt.close(fig)
    write_atomic(os.fspath(path), image.getvalue())


def _draw(ax, video: VideoResult) -> None:
    centres = [(w.start_seconds + w.end_seconds) / 2 for w in video.windows]
    for c, name in enumerate(video.classes):
        values = [100.0 * w.sigmoids[c] for w in video.windows]
        ax.plot(centres, values, marker="o", label=name)
    ax.set_title(f"{os.path.basename(video.path)}: {video.label}", fontsize=10)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("sigmoid (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=3, loc="upper right")
