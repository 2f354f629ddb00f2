"""Real clusters of processes for the tests: a coordinator (`colony coordinator`), Swift nodes
(`colony node`) and Python nodes (`python -m` a handlers script), on an ipc socket of their own."""
import os
import pathlib
import subprocess
import sys
import time

import pytest

import colony

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[2]


def colony_binary():
    candidates = [os.environ.get("COLONY_BIN", ""), REPO / ".build/debug/colony", REPO / ".build/release/colony"]
    for candidate in candidates:
        if candidate and pathlib.Path(candidate).is_file():
            return str(candidate)
    pytest.exit("no colony binary: build it (swift build) or set COLONY_BIN", returncode=2)


def wait_until(check, what, deadline=20.0):
    end = time.monotonic() + deadline
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Cluster:
    def __init__(self, directory):
        self.directory = directory
        self.url = f"ipc://{directory}/coordinator.sock"
        self.binary = colony_binary()
        self.processes = []

    def start(self, *args, log):
        handle = open(self.directory / log, "ab")
        process = subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT)
        self.processes.append(process)
        return process

    def coordinator(self, state=":memory:"):
        process = self.start(self.binary, "coordinator", "--listen", self.url, "--state", state, log="coordinator.log")

        def answers():
            try:
                with colony.Colony(self.url) as client:
                    return client.status() is not None
            except colony.Unreachable:
                return False
        wait_until(answers, "the coordinator to listen")
        return process

    def swift_node(self, name="swift", threads=2):
        process = self.start(self.binary, "node", "--coordinator", self.url, "--threads", str(threads), "--processes", "1",
                             "--name", name, log=f"{name}.log")
        self.wait_for_node(name)
        return process

    def python_node(self, name="python", threads=2):
        env = dict(os.environ, PYTHONPATH=str(HERE))
        handle = open(self.directory / f"{name}.log", "wb")
        process = subprocess.Popen([sys.executable, str(HERE / "handlers.py"), self.url, name, str(threads)], env=env,
                                   stdout=handle, stderr=subprocess.STDOUT)
        self.processes.append(process)
        self.wait_for_node(name)
        return process

    def wait_for_node(self, name, present=True):
        with colony.Colony(self.url) as client:
            wait_until(lambda: (name in [n.name for n in client.status().nodes]) == present,
                       f"node {name} {'to join' if present else 'to leave'}")

    def cli(self, *args, input=None, timeout=60):
        return subprocess.run([self.binary, *args, "--coordinator", self.url], input=input, capture_output=True, text=True,
                              timeout=timeout)

    def stop(self):
        for process in self.processes:
            if process.poll() is None:
                process.kill()
        for process in self.processes:
            process.wait(10)


@pytest.fixture(scope="module")
def swift_cluster(tmp_path_factory):
    """A coordinator and one Swift node (2 thread slots, 1 process slot)."""
    cluster = Cluster(tmp_path_factory.mktemp("swift"))
    try:
        cluster.coordinator()
        cluster.swift_node()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def python_cluster(tmp_path_factory):
    """A coordinator and one Python node (tests/handlers.py), no Swift node."""
    cluster = Cluster(tmp_path_factory.mktemp("python"))
    try:
        cluster.coordinator()
        cluster.python_node()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def client(swift_cluster):
    with colony.Colony(swift_cluster.url) as c:
        yield c
