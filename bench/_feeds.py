"""Random model inputs for the benchmarks, each of its input's dtype (tensor contract, DESIGN §3).

Contract 1 models take float32 everywhere; contract 2 models take the 64 frames as uint8 `video`,
so a random window is uint8 noise there (the graph normalises it), never float32 noise.
"""

from __future__ import annotations

import math

import numpy as np


def random_feeds(config, batch: int = 1, seed: int = 0, *, network: bool = False) -> dict[str, np.ndarray]:
    """Seeded inputs with a batch axis: standard-normal float32, uniform 0..255 uint8.

    `network=True` gives what the PyTorch network's forward takes (contract 1) instead of the
    artifact's inputs (`config.input_shapes()` / `input_dtypes()`).
    """
    rng = np.random.default_rng(seed)
    shapes = config.network_input_shapes() if network else config.input_shapes()
    dtypes = dict.fromkeys(shapes, "float32") if network else config.input_dtypes()
    feeds = {}
    for name, shape in shapes.items():
        if dtypes[name] == "uint8":
            feeds[name] = rng.integers(0, 256, (batch, *shape), dtype=np.uint8)
        else:
            feeds[name] = rng.standard_normal((batch, *shape), dtype=np.float32)
    return feeds


def window_bytes(config) -> int:
    """Bytes of one window's inputs as the artifact takes them (16.6 MB float32, ~5.5 MB contract 2)."""
    dtypes = config.input_dtypes()
    return sum(np.dtype(dtypes[n]).itemsize * math.prod(s) for n, s in config.input_shapes().items())
