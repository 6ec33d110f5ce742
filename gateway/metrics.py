"""Prometheus metrics, one registry per gateway (no global state; tests build several).

Names (stable, documented in docs/operations.md):

* ``switchboard_accounts{state}`` -- accounts by state (read from the status store at scrape)
* ``switchboard_account_restarts_total{provider,account}`` -- supervisor restarts
* ``switchboard_reloads_total{outcome}`` -- config reloads (ok / rejected / failed)
* ``switchboard_inbound_messages_total{provider,account,result}`` -- accepted / duplicate / denied
* ``switchboard_outbound_messages_total{provider,account,result}`` -- delivered / dead / retried
* ``switchboard_delivery_latency_seconds`` -- accept-to-delivered histogram
* ``switchboard_outbox_depth`` / ``switchboard_dead_letters`` -- read from the outbox at scrape
* ``switchboard_rate_limit_waits_total{provider,account}`` -- waits caused by provider limits
* ``switchboard_handler_failures_total{kind}`` -- handler calls that failed
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from gateway.status import StatusStore


class _StateCollector(Collector):
    def __init__(self, status: StatusStore, outbox_depth: Callable[[], tuple[int, int]] | None):
        self.status = status
        self.outbox_depth = outbox_depth

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        accounts = GaugeMetricFamily("switchboard_accounts", "Accounts by state", labels=["state"])
        for state, count in self.status.counts_by_state().items():
            accounts.add_metric([state], count)
        yield accounts
        restarts = CounterMetricFamily("switchboard_account_restarts", "Supervisor restarts per account",
                                       labels=["provider", "account"])
        for snap in self.status.snapshot():
            restarts.add_metric([snap["provider"], snap["account"]], snap.get("restarts") or 0)
        yield restarts
        if self.outbox_depth is not None:
            depth, dead = self.outbox_depth()
            yield GaugeMetricFamily("switchboard_outbox_depth", "Messages waiting in the outbox", value=depth)
            yield GaugeMetricFamily("switchboard_dead_letters", "Messages in dead letters", value=dead)


class LoopHistogram(Collector):
    """A histogram observed from the event loop only: plain integers, no lock.

    ``prometheus_client.Histogram`` takes a mutex for the sum and again for the bucket on
    every observation; the outbox observes one value per delivered message, and this costs
    a tenth of that. Same exposition (``_bucket``/``_count``/``_sum``, cumulative ``le``).
    """

    def __init__(self, name: str, documentation: str, buckets: Sequence[float]):
        self.name = name
        self.documentation = documentation
        self.bounds = sorted(float(b) for b in buckets)
        self._counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self._sum = 0.0

    def observe(self, value: float) -> None:
        self._counts[bisect.bisect_left(self.bounds, value)] += 1
        self._sum += value

    def collect(self) -> Iterator[HistogramMetricFamily]:
        cumulative, buckets = 0, []
        for bound, count in zip([*self.bounds, float("inf")], self._counts, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else _format_bound(bound), cumulative))
        yield HistogramMetricFamily(self.name, self.documentation, buckets=buckets, sum_value=self._sum)


def _format_bound(bound: float) -> str:
    """``le`` as prometheus_client writes it (``0.005``, ``1.0``)."""
    return repr(float(bound))


class Metrics:
    def __init__(self, status: StatusStore):
        self.registry = CollectorRegistry(auto_describe=True)
        self._collector = _StateCollector(status, None)
        self.registry.register(self._collector)
        self.reloads = Counter("switchboard_reloads", "Config reloads", ["outcome"], registry=self.registry)
        self.inbound = Counter("switchboard_inbound_messages", "Inbound messages",
                               ["provider", "account", "result"], registry=self.registry)
        self.outbound = Counter("switchboard_outbound_messages", "Outbound messages",
                                ["provider", "account", "result"], registry=self.registry)
        self.delivery_latency = LoopHistogram(
            "switchboard_delivery_latency_seconds", "Accept-to-delivered latency",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self.registry.register(self.delivery_latency)
        self.rate_limit_waits = Counter("switchboard_rate_limit_waits", "Waits caused by provider rate limits",
                                        ["provider", "account"], registry=self.registry)
        self.handler_failures = Counter("switchboard_handler_failures", "Failed handler calls", ["kind"],
                                        registry=self.registry)

    def set_outbox_source(self, depth: Callable[[], tuple[int, int]]) -> None:
        """The outbox registers ``() -> (depth, dead letters)`` for scrapes."""
        self._collector.outbox_depth = depth

    def render(self) -> bytes:
        return generate_latest(self.registry)
