"""Prometheus metrics of one server instance (its own registry, so tests can run several).

The hot path (every audio frame) only bumps plain Python numbers on :class:`Metrics`; a custom
collector turns them into Prometheus families when ``/metrics`` is scraped. prometheus-client's
own Counter/Histogram take a lock per update, which cost more than the rest of an audio frame's
handling. All updates and scrapes happen on the server's event loop thread.
"""

from __future__ import annotations

import bisect
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from harken.protocol.messages import LatencyReport

CLIENT_TYPES = frozenset(
    {
        "Settings",
        "SettingsConfiguration",
        "UpdatePrompt",
        "UpdateInstructions",
        "UpdateSpeak",
        "UpdateThink",
        "UpdateListen",
        "InjectUserMessage",
        "InjectAgentMessage",
        "FunctionCallResponse",
        "KeepAlive",
    }
)
_TYPE = re.compile(r'"type"\s*:\s*"([A-Za-z]{1,40})"')
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
TURN_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0, 10.0)
LAG_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.02,
    0.035,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
)


def rss() -> float:
    """This process's resident set size in bytes (Linux's /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return float(pages * PAGE)


def message_type(text: str) -> str:
    """The ``type`` of a client text frame for labelling (cheap; not a parser): else "other"."""
    match = _TYPE.search(text, 0, 4096)
    if match is None:
        return "other"
    name = match.group(1)
    return name if name in CLIENT_TYPES else "other"


class Histogram:
    """A lock-free histogram (non-cumulative bucket counts; the last bucket is +Inf)."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        cumulative, running = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            cumulative.append((_le(bound), float(running)))
        return HistogramMetricFamily(name, documentation, buckets=cumulative, sum_value=self.sum)


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, capacity: int = 0) -> None:
        self.sessions_active = 0
        self.capacity = capacity  # max_sessions
        self.draining = 0  # 1 once SIGTERM started the drain
        self.sessions_total: Counter[str] = Counter()
        self.client_messages: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.warnings: Counter[str] = Counter()
        self.job_failures: Counter[str] = Counter()
        self.audio_in_bytes = 0
        self.audio_out_bytes = 0
        self.frame_seconds = Histogram(LAG_BUCKETS)
        self.reply_seconds = Histogram(TURN_BUCKETS)  # end of the user's turn -> agent audio
        self.end_of_turn_seconds = Histogram(TURN_BUCKETS)  # the silence that ended a turn
        self.probes: list[tuple[str, str, Callable[[], float]]] = []  # read at each scrape
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def count_text(self, text: str) -> None:
        self.client_messages[message_type(text)] += 1

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "harken_sessions_active", "Open agent sessions", value=self.sessions_active
        )
        yield GaugeMetricFamily(
            "harken_sessions_capacity", "Sessions this replica takes (max_sessions)", self.capacity
        )
        yield GaugeMetricFamily(
            "harken_draining", "1 while the replica drains (no new sessions)", self.draining
        )
        yield _labelled("harken_sessions", "Sessions accepted", "generation", self.sessions_total)
        yield _labelled(
            "harken_client_messages",
            "Client frames by message type (binary audio frames are type=audio)",
            "type",
            self.client_messages,
        )
        yield _labelled("harken_errors", "Error messages sent to clients", "code", self.errors)
        yield _labelled(
            "harken_warnings", "Warning messages sent to clients", "code", self.warnings
        )
        yield _labelled(
            "harken_job_failures", "Provider jobs that failed", "kind", self.job_failures
        )
        yield CounterMetricFamily(
            "harken_audio_in_bytes", "User audio bytes in", value=self.audio_in_bytes
        )
        yield CounterMetricFamily(
            "harken_audio_out_bytes", "Agent audio bytes out", value=self.audio_out_bytes
        )
        yield self.frame_seconds.family(
            "harken_frame_handling_seconds",
            "Time from a client frame being read off the socket to the session having "
            "handled it (queueing included)",
        )

        yield self.reply_seconds.family(
            "harken_reply_latency_seconds",
            "End of the user's turn to the reply's first audio sent (LatencyReport total_latency)",
        )
        yield self.end_of_turn_seconds.family(
            "harken_end_of_turn_seconds",
            "The silence that ended the user's turn, as the server heard it (eou_latency)",
        )

        yield GaugeMetricFamily(
            "harken_process_resident_bytes", "The server process's resident memory", rss()
        )
        for name, documentation, probe in self.probes:
            yield GaugeMetricFamily(name, documentation, probe())

    def observe_latency(self, report: LatencyReport) -> None:
        if report.total_latency is not None:
            self.reply_seconds.observe(report.total_latency)
        if report.eou_latency is not None:
            self.end_of_turn_seconds.observe(report.eou_latency)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _labelled(name: str, documentation: str, label: str, values: Counter[str]) -> Metric:
    family = CounterMetricFamily(name, documentation, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family
