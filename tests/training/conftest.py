"""Stand-in data for the training tests: short generated clips in train and validation splits."""

import pytest


@pytest.fixture(scope="session")
def standin_factory(tmp_path_factory):
    """`make(name, train=N, validation=M)`: a stand-in root with N train and M validation clips per
    class (1.5 s, 64x48), and an empty feature-cache folder beside it."""
    from mvrt.standin import generate_standin

    def make(name: str, *, train: int, validation: int):
        root = tmp_path_factory.mktemp(name)
        generate_standin(root, clips_per_class={"train": train, "validation": validation},
                         splits=("train", "validation"), seconds=1.5, width=64, height=48, progress=False)
        return root, tmp_path_factory.mktemp("cache")

    return make
