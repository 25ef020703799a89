"""The Prometheus endpoint, scraped over 127.0.0.1 like Prometheus would."""

from __future__ import annotations

import math
import signal

import httpx
from prometheus_client.parser import text_string_to_metric_families

from monitor.app import Monitor
from monitor.config import load_config
from tests.daemon_process import Daemon, wait_for
from tests.servers.feeds import recent, rss
from tests.servers.smtp import free_port

COMPLAINT = {"title": "Acme charged me twice", "link": "https://blog.example/acme-twice", "guid": "twice-1",
             "description": "Acme charged me twice and support hung up. Still no refund. Furious.",
             "pubDate": recent()}


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_endpoint_counts_polls_errors_mentions_alerts_and_lag(feeds, smtp, write_config):
    good = feeds.serve("/acme.xml", rss([COMPLAINT]))
    bad = feeds.serve("/bad.xml", "nope", status=500, content_type="text/plain")
    port = free_port()
    config = load_config(write_config({
        "sources": {"rss": {"feeds": [{"url": good}, {"url": bad}]}},
        "email": {"smtp": {"host": "127.0.0.1", "port": smtp.port}},
        "metrics": {"port": port},
    }))
    monitor = Monitor.from_config(config)
    server = monitor.metrics.serve(port)
    try:
        monitor.poll("rss")
        m = scrape(port)
        rss_label = (("source", "rss"),)
        assert m[("complaint_monitor_polls_total", rss_label)] == 1
        assert m[("complaint_monitor_poll_errors_total", rss_label)] == 1
        assert m[("complaint_monitor_items_seen_total", rss_label)] == 1
        assert m[("complaint_monitor_mentions_stored_total", rss_label)] == 1
        assert m[("complaint_monitor_alerts_queued_total", rss_label)] == 1
        assert m[("complaint_monitor_alerts_pending", ())] == 1
        assert m[("complaint_monitor_oldest_pending_alert_seconds", ())] >= 0
        assert math.isnan(m[("complaint_monitor_seconds_since_last_success", rss_label)]), "no clean poll yet"
        assert m[("complaint_monitor_poll_seconds_count", rss_label)] == 1

        monitor.deliver()
        feeds.serve("/bad.xml", rss([]))
        monitor.poll("rss")
        m = scrape(port)
        assert m[("complaint_monitor_alerts_sent_total", ())] == 1
        assert m[("complaint_monitor_alerts_pending", ())] == 0
        assert m[("complaint_monitor_oldest_pending_alert_seconds", ())] == 0
        assert m[("complaint_monitor_polls_total", rss_label)] == 2
        assert m[("complaint_monitor_mentions_stored_total", rss_label)] == 1, "nothing stored twice"
        assert 0 <= m[("complaint_monitor_seconds_since_last_success", rss_label)] < 60

        # A second monitor in the same process has its own registry: no clash, own numbers.
        other = Monitor.from_config(config)
        try:
            assert other.metrics.registry is not monitor.metrics.registry
            sample = ("complaint_monitor_polls_total", {"source": "rss"})
            assert monitor.metrics.registry.get_sample_value(*sample) == 2
            assert other.metrics.registry.get_sample_value(*sample) is None
        finally:
            other.close()
    finally:
        server.shutdown()
        monitor.close()


def test_daemon_serves_metrics_when_a_port_is_set(feeds, write_config, tmp_path):
    url = feeds.serve("/acme.xml", rss([COMPLAINT]))
    port = free_port()
    path = write_config({"sources": {"rss": {"feeds": [{"url": url}], "interval": 60}}, "metrics": {"port": port}})
    daemon = Daemon(path, tmp_path / "daemon.log")
    try:
        daemon.wait_running()

        def polled():
            try:
                return scrape(port).get(("complaint_monitor_polls_total", (("source", "rss"),)))
            except httpx.HTTPError:
                return None
        assert wait_for(polled, timeout=30, what="a poll counted on the endpoint") == 1
        daemon.send(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0, daemon.log()
    finally:
        daemon.stop()
    assert f"metrics on http://127.0.0.1:{port}/metrics" in daemon.log()
