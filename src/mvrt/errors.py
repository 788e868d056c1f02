"""One error hierarchy for mvrt. Only the CLI turns these into exit codes."""

from __future__ import annotations


class MvrtError(Exception):
    """Base class of every error mvrt raises on purpose.

    The message is a single line meant for the user: it names the file (when there is
    one) and the problem, and where possible says how to fix it.

    An error about a configuration value names the setting as the library spells it (the
    dataclass field or keyword argument, e.g. ``batch_size must be at least 1, got 0``) and
    passes it as ``setting="batch_size"`` (a tuple when it names several); the CLI shows that
    name as its flag (``--batch-size``). Library messages never name CLI flags. A one-word
    setting counts as the setting where it opens the message or is given a value
    (``use backend='onnxruntime'``); elsewhere it is an ordinary word ("a CUDA device").
    """

    exit_code = 1

    def __init__(self, *args: object, setting: str | tuple[str, ...] | None = None):
        super().__init__(*args)
        self.setting = setting


class UsageError(MvrtError):
    """Conflicting or invalid options."""

    exit_code = 2


class MediaError(MvrtError):
    """A media file cannot be opened, lacks a stream, or cannot be decoded."""


class UnexpectedError(MediaError):
    """An exception mvrt did not expect while reading one input (a bug: please report it)."""


class ModelError(MvrtError):
    """A checkpoint or ONNX model is missing, malformed, or does not match the runtime."""


class OutputError(MvrtError):
    """A results file, a plot or stdout could not be written (disk full, broken pipe, ...)."""


class BackendError(MvrtError):
    """An inference backend is unavailable or failed."""


class MissingDependencyError(BackendError):
    """An optional dependency (torch, onnx, tensorrt, cuda-python, librosa) is not installed."""

    def __init__(self, package: str, extra: str, purpose: str, *, setting: str | tuple[str, ...] | None = None):
        super().__init__(
            f"{purpose} needs the '{package}' package; install it with "
            f"`pip install 'mvrt[{extra}]'`",
            setting=setting,
        )
        self.package = package
        self.extra = extra


def rebuilt_error(class_name: str | None, message: str, *, setting: str | tuple[str, ...] | None = None,
                  fallback: type[MvrtError] = UnexpectedError) -> MvrtError:
    """An error sent by class name and message (from a worker process or a Ray task) as that mvrt class.

    Built without the class's own constructor (some take other arguments); a name that is not an
    mvrt error class becomes `fallback`, never a foreign class.
    """
    cls = globals().get(str(class_name))
    if not (isinstance(cls, type) and issubclass(cls, MvrtError)):
        cls = fallback
    error = cls.__new__(cls)
    MvrtError.__init__(error, message, setting=setting)
    return error
