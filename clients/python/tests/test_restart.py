"""A Python client's map and a Python node ride through a coordinator killed with SIGKILL and
started again on the same state folder (keys on submits, acknowledged fetches, node retries)."""
import threading

import colony
from conftest import Cluster, wait_until


def test_a_map_and_a_python_node_ride_through_a_coordinator_restart(tmp_path):
    cluster = Cluster(tmp_path)
    state = str(tmp_path / "state")
    try:
        coordinator = cluster.coordinator(state)
        cluster.python_node(name="rider", threads=2)
        outcome = {}
        with colony.Colony(cluster.url, patience=30) as client:
            def mapping():
                try:
                    outcome["outputs"] = list(client.map("nap", [0.02] * 100, timeout=60))
                except BaseException as error:  # reported by the assertion below
                    outcome["error"] = error
            worker = threading.Thread(target=mapping)
            worker.start()
            with colony.Colony(cluster.url) as watcher:
                wait_until(lambda: watcher.status().succeeded >= 10, "the map to be under way")
            coordinator.kill()
            coordinator.wait(10)
            cluster.coordinator(state)
            worker.join(90)
        assert "error" not in outcome, outcome.get("error")
        assert outcome["outputs"] == [0.02] * 100
    finally:
        cluster.stop()
