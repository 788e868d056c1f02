"""Formatting inference results: table (for people), json / jsonl / csv (for programs)."""

from __future__ import annotations

import csv
import io
import json

from mvrt.config import ModelConfig
from mvrt.runtime.results import VideoResult, WindowResult


def model_summary(config: ModelConfig, model_path: str, backend: str, precision: str = "fp32") -> dict:
    """What the outputs say about the model that produced them (the jsonl `model` event, json `model`)."""
    return {
        "path": model_path,
        "arch": config.arch,
        "width": config.width,
        "mmtm": config.mmtm,
        "backend": backend,
        "precision": precision,
        "window_seconds": config.frontend.window_seconds,
        "trained_on": config.trained_on or "unknown",
    }


def jsonl_line(event: WindowResult | VideoResult) -> str:
    """One machine-readable line per completed window or video."""
    if isinstance(event, WindowResult):
        return json.dumps({"type": "window", **event.to_dict()})
    data = event.to_dict()
    data.pop("windows", None)
    return json.dumps({"type": "video", **data})


def render_json(videos: list[VideoResult], model: dict, *, interrupted: bool = False) -> str:
    """The whole run as one document; `interrupted` marks a run stopped early (it lists complete videos)."""
    doc = {"model": model, "videos": [v.to_dict() for v in videos]}
    if interrupted:
        doc["interrupted"] = True
    return json.dumps(doc, indent=2) + "\n"


CSV_TAIL = ("error", "undecodable_packets", "audio_path", "trained_on")


def render_csv(videos: list[VideoResult], classes: tuple[str, ...], *, trained_on: str = "unknown") -> str:
    """A row per window and per video; every row names the separate audio file (if any) and the model's data."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "kind", "window", "start_seconds", "end_seconds", "label", *classes, *CSV_TAIL])
    for video in videos:
        audio = video.audio_path or ""
        for w in video.windows:
            writer.writerow([w.path, "window", w.index, f"{w.start_seconds:.3f}", f"{w.end_seconds:.3f}", w.label,
                             *(f"{p:.6f}" for p in w.probabilities), "", "", audio, trained_on])
        probs = [f"{p:.6f}" for p in video.probabilities] if video.ok else [""] * len(classes)
        end = f"{video.windows[-1].end_seconds:.3f}" if video.windows else ""
        writer.writerow([video.path, "video", "all", "0.000" if video.ok else "", end, video.label or "", *probs,
                         video.error or "", video.undecodable_packets if video.ok else "", audio, trained_on])
    return buf.getvalue()


def render_table(videos: list[VideoResult], model: dict) -> str:
    lines: list[str] = []
    for video in videos:
        lines.append(f"== {video.path}" + (f" (audio: {video.audio_path})" if video.audio_path else ""))
        if not video.ok:
            lines.append(f"   error: {video.error}")
            continue
        classes = video.classes
        header = f"   {'window':>6}  {'start':>8}  {'end':>8}  {'label':<10}  " + "  ".join(f"{c[:10]:>10}" for c in classes)
        lines.append(header)
        for w in video.windows:
            probs = "  ".join(f"{p:>10.3f}" for p in w.probabilities)
            lines.append(f"   {w.index:>6}  {_clock(w.start_seconds):>8}  {_clock(w.end_seconds):>8}  {w.label:<10}  {probs}")
        probs = "  ".join(f"{p:>10.3f}" for p in video.probabilities)
        lines.append(f"   {'video':>6}  {'':>8}  {'':>8}  {video.label or '-':<10}  {probs}")
        if video.count > len(video.windows):
            lines.append(f"   note: {video.count} live window(s), mean shown; --format jsonl lists each as it completes")
        elif not video.count:
            lines.append("   note: no window was complete (the source ended before its first full window)")
        if video.undecodable_packets:
            lines.append(f"   note: {video.undecodable_packets} undecodable packet(s) skipped (damaged media)")
    lines.append(footer(model))
    return "\n".join(lines) + "\n"


def footer(model: dict) -> str:
    """The table's last line: which model, how it ran, what it learnt from."""
    how = ", ".join(str(model[k]) for k in ("arch", "backend", "precision") if model.get(k))
    return f"-- model: {model['path']} ({how}); trained on: {model['trained_on']}"


def _clock(seconds: float) -> str:
    minutes, secs = divmod(max(seconds, 0.0), 60.0)
    return f"{int(minutes)}:{secs:05.2f}"
