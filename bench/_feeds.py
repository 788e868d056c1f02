"""Random model inputs for the benchmarks, each of its input's dtype (tensor contract, DESIGN §3).

Contract 1 models take float32 everywhere; contract 2 models take the 64 frames as uint8 `video`,
so a random window is uint8 noise there (the graph normalises it), never float32 noise.
"""

from __future__ import annotations

import numpy as np

from mvrt.runtime.engine_timing import synthetic_feeds


def random_feeds(config, batch: int = 1, seed: int = 0, *, network: bool = False) -> dict[str, np.ndarray]:
    """Seeded inputs with a batch axis: standard-normal float32, uniform 0..255 uint8.

    `network=True` gives what the PyTorch network's forward takes (contract 1) instead of the
    artifact's inputs (`config.input_shapes()` / `input_dtypes()`).
    """
    if network:
        return synthetic_feeds(config.network_input_shapes(), batch, seed)
    return synthetic_feeds(config.input_shapes(), batch, seed, config.input_dtypes())
