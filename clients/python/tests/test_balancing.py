"""Prefetch that does not strand: after a burst of tiny tasks a Python node asks for many tasks
ahead; long ones that arrive next must not wait behind its busy thread while another node idles."""
import colony
from conftest import Cluster


def test_long_tasks_after_tiny_ones_spread_over_idle_nodes(tmp_path):
    cluster = Cluster(tmp_path)
    try:
        cluster.coordinator()
        cluster.python_node(name="left", threads=1)
        cluster.python_node(name="right", threads=1)
        with colony.Colony(cluster.url) as client:
            assert list(client.map("square", range(3000))) == [i * i for i in range(3000)]
            ran_on = list(client.map("where", [0.3] * 4))
        assert sorted(set(ran_on)) == ["left", "right"], ran_on
    finally:
        cluster.stop()
