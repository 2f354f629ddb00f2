"""examples/seed.py against a coordinator, a Swift node and the example's own Python node."""
import os
import pathlib
import subprocess
import sys

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "seed.py"


def test_the_seed_examples_run(swift_cluster):
    done = subprocess.run([sys.executable, str(EXAMPLE), swift_cluster.url], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3. shared counter after 4 x 100 increments: 400" in done.stdout
    assert "at most 2 at once" in done.stdout
