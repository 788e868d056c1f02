"""The Fig. 11 timeline plot, tested by reading the PNG back (and its thumbnail grabber).

Clips are real H.264 files made with PyAV whose frames have known solid colours; the plot's
layout is fixed in inches, so each panel's region of the image is known from its constants.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from media_factory import index_colour, read_index, remux_damaged, write_indexed
from mvrt import _thumbnails, plot
from mvrt.config import CLASSES
from mvrt.errors import MissingDependencyError, OutputError, UsageError
from mvrt.runtime.results import VideoResult, WindowResult, sigmoid, softmax
from mvrt.standin import write_clip

pytest.importorskip("matplotlib")

MAGENTA, GREEN = (255, 0, 255), (0, 255, 0)
SAD = CLASSES.index("Sad")
# Distinct constant probabilities per class: every class's line is visible.
SPREAD = np.array([0.0, 0.6, 1.2, 1.8, 2.4, 3.0])


@pytest.fixture(scope="module")
def two_colour_clip(tmp_path_factory) -> Path:
    """6 s, 64x48 at 10 fps: magenta for the first 3 s, green for the last 3 s."""
    frames = np.zeros((60, 48, 64, 3), np.uint8)
    frames[:30], frames[30:] = MAGENTA, GREEN
    return write_clip(tmp_path_factory.mktemp("clips") / "two.mp4", None, 44100, frames, 10, gop=10)


def result(path, logits_rows, span_seconds: float = 4.0, hop_seconds: float = 1.0) -> VideoResult:
    """A VideoResult of windows [i*hop, i*hop+span], one per row of logits."""
    logits = np.asarray(logits_rows, np.float32)
    probs, sigs = softmax(logits), sigmoid(logits)
    windows = tuple(
        WindowResult(str(path), i, i * hop_seconds, i * hop_seconds + span_seconds, logits[i], probs[i], sigs[i],
                     CLASSES[int(np.argmax(probs[i]))], CLASSES)
        for i in range(len(logits)))
    return VideoResult(str(path), windows, CLASSES)


def spread(path, count: int = 3) -> VideoResult:
    return result(path, [np.roll(SPREAD, i) for i in range(count)])


def failed(name: str) -> VideoResult:
    return VideoResult(name, (), CLASSES, error=f"{name}: no video stream")


def read_png(path: Path) -> np.ndarray:
    import matplotlib.image

    return (matplotlib.image.imread(path)[..., :3] * 255).round().astype(np.int16)


def inches(value: float) -> int:
    return int(round(value * plot.DPI))


def curves_region(image: np.ndarray, panel: int = 0) -> np.ndarray:
    top = plot.HEADER_INCHES + panel * plot.PANEL_INCHES + plot.TITLE_INCHES
    return image[inches(top) + 3: inches(top + plot.CURVES_INCHES) - 3,
                 inches(plot.LEFT_INCHES) + 3: inches(plot.LEFT_INCHES + plot.AXES_WIDTH_INCHES) - 3]


def strip_region(image: np.ndarray, panel: int = 0) -> np.ndarray:
    top = plot.HEADER_INCHES + panel * plot.PANEL_INCHES + plot.TITLE_INCHES + plot.CURVES_INCHES + plot.GAP_INCHES
    return image[inches(top) + 2: inches(top + plot.STRIP_INCHES) - 2,
                 inches(plot.LEFT_INCHES) + 2: inches(plot.LEFT_INCHES + plot.AXES_WIDTH_INCHES) - 2]


def near(region: np.ndarray, colour, tolerance: int = 40) -> np.ndarray:
    """Boolean mask of the pixels within `tolerance` of `colour` in every channel."""
    return (np.abs(region - np.asarray(colour)) <= tolerance).all(axis=-1)


def class_colour(c: int) -> tuple[int, int, int]:
    from matplotlib import colormaps

    return tuple(int(round(255 * v)) for v in colormaps["tab10"].colors[c])


def panel_height_px(*panels: float) -> int:
    return inches(plot.HEADER_INCHES + sum(panels))


def test_the_image_grows_by_one_panel_per_video(two_colour_clip, tmp_path):
    one = plot.plot_timeline([spread(two_colour_clip)], tmp_path / "one.png", title_note="model trained on: x")
    three = plot.plot_timeline([spread(two_colour_clip)] * 3, tmp_path / "three.png")
    assert one == tmp_path / "one.png"
    assert read_png(one).shape == (panel_height_px(plot.PANEL_INCHES), inches(plot.FIGURE_WIDTH_INCHES), 3)
    assert read_png(three).shape[0] == panel_height_px(*[plot.PANEL_INCHES] * 3)


def test_every_class_has_a_curve_and_the_legend_is_outside_the_axes(two_colour_clip, tmp_path):
    image = read_png(plot.plot_timeline([spread(two_colour_clip)], tmp_path / "p.png"))
    curves = curves_region(image)
    assert (near(curves, (255, 255, 255), 5).mean()) < 0.97  # not blank
    legend = image[:, inches(plot.FIGURE_WIDTH_INCHES - plot.LEGEND_INCHES):]
    for c in range(len(CLASSES)):
        assert near(curves, class_colour(c), 30).sum() > 50, CLASSES[c]
        assert near(legend, class_colour(c), 30).sum() > 20, CLASSES[c]


def test_the_strip_under_the_curves_shows_the_frames_in_time_order(two_colour_clip, tmp_path):
    image = read_png(plot.plot_timeline([spread(two_colour_clip)], tmp_path / "p.png"))
    strip, curves = strip_region(image), curves_region(image)
    magenta, green = near(strip, MAGENTA), near(strip, GREEN)
    assert magenta.sum() > 2000 and green.sum() > 2000
    columns = lambda mask: np.nonzero(mask.any(axis=0))[0]  # noqa: E731
    assert columns(magenta).max() < columns(green).min()  # the first 3 s on the left
    assert columns(magenta).min() < strip.shape[1] * 0.15 and columns(green).max() > strip.shape[1] * 0.85
    assert near(curves, MAGENTA).sum() == 0  # the frames are below the curves, not on them


def test_one_window_is_a_bar_per_class_over_its_one_frame(two_colour_clip, tmp_path):
    logits = np.full(6, -3.0)
    logits[SAD] = 3.0
    video = result(two_colour_clip, [logits], span_seconds=6.0)
    image = read_png(plot.plot_timeline([video], tmp_path / "p.png"))
    assert image.shape[0] == panel_height_px(plot.PANEL_INCHES)
    assert near(curves_region(image), class_colour(SAD), 10).sum() > 3000  # a tall bar, not a dot
    thumbnail = near(strip_region(image), MAGENTA) | near(strip_region(image), GREEN)
    columns = np.nonzero(thumbnail.any(axis=0))[0]
    assert 0 < columns.max() - columns.min() < strip_region(image).shape[1] * 0.2  # one frame, in the middle
    assert abs((columns.max() + columns.min()) / 2 - strip_region(image).shape[1] / 2) < 10


def test_sigmoids_plot_the_sigmoids_not_the_softmax(two_colour_clip, tmp_path):
    logits = np.full(6, -30.0)
    logits[0], logits[SAD] = 30.0, 2.2  # softmax Sad ~ 0, sigmoid Sad ~ 0.9
    video = result(two_colour_clip, [logits] * 3)
    assert video.windows[0].probabilities[SAD] < 1e-9 and video.windows[0].sigmoids[SAD] > 0.89
    high = lambda image: curves_region(image)[: int(curves_region(image).shape[0] * 0.3)]  # noqa: E731
    soft = read_png(plot.plot_timeline([video], tmp_path / "soft.png"))
    sig = read_png(plot.plot_timeline([video], tmp_path / "sig.png", sigmoids=True))
    assert near(high(soft), class_colour(SAD), 30).sum() == 0
    assert near(high(sig), class_colour(SAD), 30).sum() > 100


@pytest.mark.parametrize("where", ["-", "rtsp://127.0.0.1:9/live", "gone.mp4"])
def test_a_source_that_cannot_be_read_again_is_drawn_without_thumbnails(two_colour_clip, tmp_path, where):
    path = str(tmp_path / where) if where == "gone.mp4" else where
    target = plot.plot_timeline([spread(path)], tmp_path / "p.png")
    image = read_png(target)
    assert image.shape[0] == panel_height_px(plot.PANEL_INCHES)
    assert near(curves_region(image), class_colour(0), 30).sum() > 50
    strip = strip_region(image)
    assert near(strip, MAGENTA).sum() == 0 and near(strip, GREEN).sum() == 0
    assert (~near(strip, (255, 255, 255), 5)).sum() > 50  # the note is written there


def test_failed_videos_get_a_line_and_many_videos_are_capped(two_colour_clip, tmp_path):
    mixed = read_png(plot.plot_timeline([spread(two_colour_clip), failed("bad.mp4"), spread(two_colour_clip)],
                                        tmp_path / "mixed.png"))
    assert mixed.shape[0] == panel_height_px(plot.PANEL_INCHES, plot.ERROR_PANEL_INCHES, plot.PANEL_INCHES)
    error_line = mixed[inches(plot.HEADER_INCHES + plot.PANEL_INCHES):
                       inches(plot.HEADER_INCHES + plot.PANEL_INCHES + plot.ERROR_PANEL_INCHES)]
    assert near(error_line, (178, 34, 34), 40).sum() > 100  # firebrick text
    many = read_png(plot.plot_timeline([failed(f"v{i}.mp4") for i in range(plot.MAX_PANELS + 3)],
                                       tmp_path / "many.png"))
    assert many.shape[0] == panel_height_px(*[plot.ERROR_PANEL_INCHES] * plot.MAX_PANELS)


def test_a_damaged_clip_and_no_videos_still_plot(two_colour_clip, tmp_path):
    damage = {("video", 12): "garbage", ("video", 31): "zero"}
    damaged = remux_damaged(two_colour_clip, tmp_path / "damaged.mp4", damage)
    image = read_png(plot.plot_timeline([spread(damaged)], tmp_path / "damaged.png"))
    assert near(strip_region(image), MAGENTA).sum() > 2000
    empty = read_png(plot.plot_timeline([], tmp_path / "empty.png"))
    assert empty.shape[0] == panel_height_px(plot.ERROR_PANEL_INCHES)


def test_a_failed_write_leaves_no_file(two_colour_clip, tmp_path):
    video = [spread(two_colour_clip)]
    with pytest.raises(OutputError, match="cannot write output"):
        plot.plot_timeline(video, tmp_path / "missing" / "p.png")
    if Path("/dev/full").exists():
        with pytest.raises(OutputError, match="No space left on device"):
            plot.plot_timeline(video, "/dev/full")
    with pytest.raises(UsageError, match=r"p\.xyz: cannot draw a plot as \.xyz"):
        plot.plot_timeline(video, tmp_path / "p.xyz")
    assert list(tmp_path.iterdir()) == []  # no temporary file left beside the target


def test_require_matplotlib_names_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    with pytest.raises(MissingDependencyError, match=r"pip install 'mvrt\[plot\]'"):
        plot.require_matplotlib()


# The thumbnail grabber.

def test_a_thumbnail_is_the_frame_displayed_at_its_time(tmp_path):
    clip = write_indexed(tmp_path / "i.mp4", count=80, fps=10, size=(48, 64), gop=25)
    strip = _thumbnails.grab_strip(str(clip), [0.0, 1.05, 3.99, 7.95, 30.0], height_px=40)
    assert strip.note is None
    assert [read_index(t.image) for t in strip.thumbnails] == [0, 10, 39, 79, 79]
    assert strip.thumbnails[0].image.shape == (40, 53, 3)  # the video's 4:3 aspect
    assert _thumbnails.display_aspect(str(clip)) == pytest.approx(64 / 48)


def test_instants_between_keyframes_are_read_by_decoding_on(tmp_path):
    clip = write_indexed(tmp_path / "i.mp4", count=60, fps=10, size=(32, 32), gop=600)  # one keyframe
    strip = _thumbnails.grab_strip(str(clip), [4.0, 0.3, 2.25, 5.9], height_px=16)
    assert [t.seconds for t in strip.thumbnails] == [0.3, 2.25, 4.0, 5.9]  # in time order
    assert [read_index(t.image) for t in strip.thumbnails] == [3, 22, 40, 59]


def test_decoding_after_a_seek_is_bounded(tmp_path, monkeypatch):
    clip = write_indexed(tmp_path / "i.mp4", count=60, fps=10, size=(32, 32), gop=600)  # one keyframe
    monkeypatch.setattr(_thumbnails, "MAX_FRAMES_PER_SEEK", 5)
    (thumbnail,) = _thumbnails.grab_strip(str(clip), [5.0], height_px=16).thumbnails
    assert read_index(thumbnail.image) == 4  # gave up after 5 frames from the keyframe


def test_unreadable_sources_give_a_note_not_an_error(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video" * 100)
    audio = write_clip(tmp_path / "a.m4a", np.zeros((1, 8000), np.float32), 8000, None, 10)
    notes = {name: _thumbnails.grab_strip(str(name), [1.0]).note
             for name in ("-", "http://127.0.0.1:9/x.mp4", tmp_path / "gone.mp4", junk, audio)}
    assert list(notes.values()) == ["no thumbnails (live source)", "no thumbnails (live source)",
                                    "no thumbnails (file not found)", notes[junk], "no thumbnails (no video stream)"]
    assert notes[junk].startswith("no thumbnails (cannot decode: ") and "\n" not in notes[junk]


def test_strip_times_and_count():
    assert _thumbnails.strip_times(0.0, 10.0, 5) == [1.0, 3.0, 5.0, 7.0, 9.0]
    assert _thumbnails.strip_times(2.0, 2.0, 1) == [2.0]
    assert _thumbnails.strip_count(16 / 9, 8.0, 0.8, 12) == 5
    assert _thumbnails.strip_count(0.25, 8.0, 0.8, 12) == _thumbnails.MAX_THUMBNAILS
    assert _thumbnails.strip_count(1.0, 8.0, 0.8, 1) == 1


def test_index_colours_survive_the_thumbnail(tmp_path):
    clip = write_indexed(tmp_path / "i.mp4", count=20, fps=10, size=(32, 32))
    (thumbnail,) = _thumbnails.grab_strip(str(clip), [1.5], height_px=24).thumbnails
    assert np.abs(thumbnail.image[12, 12].astype(int) - index_colour(15)).max() < 12
