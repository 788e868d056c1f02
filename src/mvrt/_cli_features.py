"""`mvrt features`: the exact input tensors of one window, and the mono audio the front-end saw."""

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from mvrt._cli_infer import decode_option, model_or_bundled
from mvrt._cli_output import check_writable
from mvrt._cli_types import Args, choice
from mvrt.errors import UsageError

EXIT_OK = 0
AUDIO_SUFFIXES = (".wav", ".flac")
Decode = decode_option()

FEATURES_HELP = """Write the input tensors of one window, exactly as the engine sees them.

An .npz with one array per model input (float32, no batch axis), the model config as JSON (key
mvrt_config) and the window start (start_seconds). --audio-out adds the mono audio the front-end
took those spectrograms from, one file per sample rate. Use it to check your own preprocessing.

Examples:
  # the bundled model's front-end, the window from 0:00
  mvrt features clip.mp4 -o feats.npz
  # your model's front-end and normalisation, the window from 0:30
  mvrt features clip.mp4 --model m.onnx --start 30 -o feats.npz
  # + the audio it saw: w.8000.wav and w.32000.wav (slowfast's two rates)
  mvrt features clip.mp4 -o feats.npz --audio-out w.wav
  # an architecture's default front-end, without normalisation
  mvrt features clip.mp4 --arch musicvideo -o feats.npz
  # the frames as NVDEC decodes them (compare with --decode cpu)
  mvrt features clip.mp4 -o gpu.npz --decode nvdec

Exit status: 0 written, 1 the input or model failed, 2 bad usage.
"""


def features(
    video: Annotated[str, typer.Argument(metavar="VIDEO", show_default=False,
                                         help="media file with an audio and a video stream")],
    output: Annotated[str, typer.Option("--output", "-o", metavar="NPZ", show_default=False,
                                        help="output .npz file")],
    model: Annotated[Optional[str], typer.Option(
        "--model", metavar="FILE", show_default="the bundled demo model",
        help="model whose front-end and normalisation to use (.onnx / .safetensors / .plan); conflicts with --arch")]
        = None,
    arch: Annotated[Optional[str], typer.Option(
        "--arch", click_type=choice("slowfast", "musicvideo"), show_default="none",
        help="an architecture's default front-end, without normalisation; conflicts with --model")] = None,
    start: Annotated[float, typer.Option("--start", metavar="SECONDS", help="window start")] = 0.0,
    audio_out: Annotated[Optional[str], typer.Option(
        "--audio-out", metavar="FILE", show_default="none",
        help="also write the window's mono audio, float32 WAV (.flac: 24-bit FLAC), one file per sample rate "
        "(FILE with the rate before the suffix when the model has several)")] = None,
    frontend: Annotated[str, typer.Option(
        "--frontend", click_type=choice("auto", "native", "numpy"),
        help="spectrogram implementation (auto: the native C++ kernel when built)")] = "auto",
    decode: Decode = "auto",
) -> int:
    return run_features(Args(locals()))


def run_features(args) -> int:
    import io

    import numpy as np

    from mvrt.files import write_atomic
    from mvrt.runtime.window_reader import iter_file_features, window_at

    config = _config(args)
    if args.audio_out:
        _check_audio_out(args.audio_out)
    window = window_at(args.video, config, args.start)
    _, feeds = next(iter_file_features(args.video, config, [window], implementation=args.frontend,
                                       decode=args.decode))
    buffer = io.BytesIO()
    np.savez(buffer, **feeds, mvrt_config=np.array(config.to_json()), start_seconds=np.float64(window.start_seconds))
    write_atomic(args.output, buffer.getvalue())  # whole or not at all
    shapes = ", ".join(f"{name} {tuple(a.shape)}" for name, a in feeds.items())
    print(f"wrote {args.output}: {shapes}", file=sys.stderr)
    if args.audio_out:
        for path, rate, seconds in write_window_audio(args.video, config, window, args.audio_out):
            print(f"wrote {path}: mono audio at {rate} Hz, {seconds:g} s (the window's samples as the front-end "
                  "saw them)", file=sys.stderr)
    return EXIT_OK


def _config(args):
    """The model's config (the bundled model's when neither --model nor --arch is given)."""
    from mvrt.config import ModelConfig
    from mvrt.runtime.model_meta import read_model_config

    if args.model is not None and args.arch is not None:
        raise UsageError("--model and --arch conflict: give the model whose front-end to use, or an architecture")
    if args.arch is not None:
        return ModelConfig(arch=args.arch)
    args.model = model_or_bundled(args.model)
    return read_model_config(args.model)


def _check_audio_out(target: str) -> None:
    if Path(target).suffix.lower() not in AUDIO_SUFFIXES:
        raise UsageError(f"--audio-out {target}: expected a {' or '.join(AUDIO_SUFFIXES)} file")
    check_writable(target, "--audio-out")


def audio_paths(target: str, rates: list[int]) -> dict[int, Path]:
    """Where each rate's audio goes: `target` itself for one rate, else the rate before its suffix."""
    path = Path(target)
    if len(rates) == 1:
        return {rates[0]: path}
    return {rate: path.with_name(f"{path.stem}.{rate}{path.suffix}") for rate in rates}


def write_window_audio(video: str, config, window, target: str) -> list[tuple[Path, int, float]]:
    """Write the mono samples of `window` at each of the model's audio rates; [(path, rate, seconds)].

    The samples come from the front-end's own decoder (`window_audio`, through `iter_window_audio`)
    and are cut or zero-padded to the window length as `window_features` does.
    """
    from mvrt.files import write_audio
    from mvrt.runtime.decode import iter_window_audio
    from mvrt.runtime.network_inputs import fit_length

    fe = config.frontend
    rates = sorted(set(config.audio_inputs.values()))
    paths = audio_paths(target, rates)
    samples = next(iter_window_audio(video, [window], rates, fe.window_seconds))
    written = []
    for rate in rates:
        mono = fit_length(samples[rate], fe.window_samples(rate))
        flac = paths[rate].suffix.lower() == ".flac"
        write_audio(paths[rate], mono, rate, "PCM_24" if flac else "FLOAT")
        written.append((paths[rate], rate, mono.size / rate))
    return written
