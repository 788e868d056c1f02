"""TensorRT build settings: one frozen, validated dataclass shared by `mvrt export` and the builder."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mvrt.artifacts import PRECISIONS
from mvrt.errors import UsageError

DEFAULT_BATCH = "1:4:8"


@dataclass(frozen=True)
class TensorRTSettings:
    """What the TensorRT builder is asked for; precision is that of the ONNX graph (DESIGN §6)."""

    precision: str = "fp32"
    batch_min: int = 1
    batch_opt: int = 4
    batch_max: int = 8
    workspace_gib: float = 1.0
    timing_cache: Path | None = None
    version_compatible: bool = False
    dla_core: int | None = None
    exclude_lean_runtime: bool = False  # version-compatible plans only: leave the lean runtime out

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise UsageError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        batch = (self.batch_min, self.batch_opt, self.batch_max)
        if not all(isinstance(b, int) and not isinstance(b, bool) for b in batch) or not 1 <= batch[0] <= batch[1] <= batch[2]:
            raise UsageError(f"batch {':'.join(map(str, batch))} (batch_min:batch_opt:batch_max) must satisfy "
                             "1 <= MIN <= OPT <= MAX", setting="batch")
        if not self.workspace_gib > 0:
            raise UsageError(f"workspace_gib must be positive, got {self.workspace_gib}", setting="workspace_gib")
        if self.dla_core is not None:
            self._check_dla()
        if self.timing_cache is not None and Path(self.timing_cache).is_dir():
            raise UsageError(f"timing_cache {self.timing_cache}: is a folder; name a file", setting="timing_cache")
        if self.exclude_lean_runtime and not self.version_compatible:
            raise UsageError("exclude_lean_runtime=True only applies to version-compatible plans "
                             "(version_compatible=True)", setting="version_compatible")

    def _check_dla(self) -> None:
        if isinstance(self.dla_core, bool) or not isinstance(self.dla_core, int) or self.dla_core < 0:
            raise UsageError(f"dla_core must be a core index (0, 1, ...), got {self.dla_core}", setting="dla_core")
        if self.precision == "fp32":
            raise UsageError("dla_core: DLA runs fp16 or int8 graphs only; export with precision='fp16'",
                             setting=("dla_core", "precision"))
        if self.batch_min != self.batch_max:
            raise UsageError(f"dla_core: DLA needs a fixed batch (MIN = OPT = MAX), got batch={self.batch_label!r}",
                             setting=("dla_core", "batch"))

    @property
    def batch_label(self) -> str:
        return f"{self.batch_min}:{self.batch_opt}:{self.batch_max}"

    def describe(self) -> str:
        """One line naming every setting, for logs and the CLI summary."""
        return (f"precision {self.precision} (from the graph), batch {self.batch_label}, workspace {self.workspace_gib:g} GiB, "
                f"timing cache {self.timing_cache or 'none'}, version-compatible {'yes' if self.version_compatible else 'no'}, "
                f"DLA core {'none' if self.dla_core is None else self.dla_core}")


def parse_batch(text: str) -> tuple[int, int, int]:
    """`MIN:OPT:MAX`, or a single `N` meaning `1:N:N`; checked 1 <= MIN <= OPT <= MAX."""
    parts = text.strip().split(":")
    if len(parts) not in (1, 3):
        raise UsageError(f"batch {text!r}: expected MIN:OPT:MAX or a single N (meaning 1:N:N)", setting="batch")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise UsageError(f"batch {text!r}: batch sizes must be whole numbers", setting="batch") from None
    low, opt, high = (1, values[0], values[0]) if len(values) == 1 else values
    if not 1 <= low <= opt <= high:
        raise UsageError(f"batch {text}: must satisfy 1 <= MIN <= OPT <= MAX", setting="batch")
    return low, opt, high


def make_settings(precision: str, batch: str = DEFAULT_BATCH, workspace_gib: float = 1.0,
                  timing_cache: str | os.PathLike | None = None, version_compatible: bool = False,
                  dla_core: int | None = None) -> TensorRTSettings:
    """Settings from CLI-style values (batch as text)."""
    low, opt, high = parse_batch(batch)
    return TensorRTSettings(precision=precision, batch_min=low, batch_opt=opt, batch_max=high,
                            workspace_gib=workspace_gib, timing_cache=Path(timing_cache) if timing_cache else None,
                            version_compatible=version_compatible, dla_core=dla_core)
