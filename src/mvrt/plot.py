"""The paper's Fig. 11: per-class sigmoid curves over time, one panel per video."""

from __future__ import annotations

import os

from mvrt.errors import MissingDependencyError
from mvrt.runtime.results import VideoResult


def plot_timeline(videos: list[VideoResult], path: str | os.PathLike, *, title_note: str = "") -> None:
    """Draw each successful video's per-class curves (sigmoid, %) against window centre time."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependencyError("matplotlib", "plot", "--plot") from None
    shown = [v for v in videos if v.ok and v.windows]
    fig, axes = plt.subplots(len(shown) or 1, 1, figsize=(10, 3.2 * max(1, len(shown))), squeeze=False)
    for ax, video in zip(axes[:, 0], shown):
        _draw(ax, video)
    if title_note:
        fig.suptitle(title_note, fontsize=9)
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=110)
    plt.close(fig)


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
