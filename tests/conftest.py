import os
import pathlib
import sys

# Local Ray clusters bind to 127.0.0.1 only; Ray reads this when it is imported, and some tests
# import ray before mvrt.ray_runner would set it (mvrt.ray_runner sets it for address="local").
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

sys.path.insert(0, str(pathlib.Path(__file__).parent))

pytest_plugins = ["shared_fixtures"]
