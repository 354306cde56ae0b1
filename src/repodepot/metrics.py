"""Prometheus metrics, one registry per application (no module-level state)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from repodepot.latency import RecentDurations

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# Streams whose length is the client's (an SSE watcher) or the repository's (a clone), not
# the server's speed: left out of the backpressure gate's p99.
LONG_LIVED = ("/events", "/git-upload-pack", "/git-receive-pack")
GIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)


class Metrics:
    """HTTP request and git command counters and latency histograms."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "repodepot_http_requests_total",
            "HTTP requests answered.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_seconds = Histogram(
            "repodepot_http_request_duration_seconds",
            "Time to answer an HTTP request.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.git_commands = Counter(
            "repodepot_git_commands_total",
            "git commands run, by outcome.",
            ["subcommand", "outcome"],
            registry=self.registry,
        )
        self.git_seconds = Histogram(
            "repodepot_git_command_duration_seconds",
            "Wall time of git commands.",
            ["subcommand"],
            buckets=GIT_BUCKETS,
            registry=self.registry,
        )
        self.recent = RecentDurations(30)
        self.backpressure_closed = Gauge(
            "repodepot_backpressure_closed",
            "1 while new background work waits, by the signal above its limit (load, p99).",
            ["reason"],
            registry=self.registry,
        )
        self.backpressure_paused = Counter(
            "repodepot_backpressure_paused_total",
            "Starts of background work put off because the backpressure gate was closed.",
            ["loop"],
            registry=self.registry,
        )
        self.sqlite_maintenance_seconds = Histogram(
            "repodepot_sqlite_maintenance_duration_seconds",
            "Time of one SQLite maintenance task (optimize, checkpoint).",
            ["task"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.sqlite_maintenance_last = Gauge(
            "repodepot_sqlite_maintenance_last_run_timestamp_seconds",
            "When each SQLite maintenance task last ran (Unix time).",
            ["task"],
            registry=self.registry,
        )
        self.sqlite_wal_frames = Gauge(
            "repodepot_sqlite_wal_frames",
            "Frames in the SQLite WAL after the last checkpoint: all, and not yet checkpointed.",
            ["state"],
            registry=self.registry,
        )
        self.reader_pool_hits = Counter(
            "repodepot_reader_pool_hits_total",
            "Mirror reads answered by a running long-lived git reader.",
            registry=self.registry,
        )
        self.reader_pool_misses = Counter(
            "repodepot_reader_pool_misses_total",
            "Mirror reads that had to start a long-lived git reader.",
            registry=self.registry,
        )
        self.reader_pool_evictions = Counter(
            "repodepot_reader_pool_evictions_total",
            "Long-lived git readers ended by the pool, by reason (budget, idle, age, count).",
            ["reason"],
            registry=self.registry,
        )
        self.reader_pool_readers = Gauge(
            "repodepot_reader_pool_readers",
            "Long-lived git readers in the pool.",
            registry=self.registry,
        )
        self.commit_reads = Counter(
            "repodepot_commit_reads_total",
            "Commits asked for: read in-process from the packs (a full id), or asked of git.",
            ["by"],
            registry=self.registry,
        )
        self.reader_pool_resident = Gauge(
            "repodepot_reader_pool_resident_bytes",
            "Resident memory of the pool's git readers, as last measured.",
            registry=self.registry,
        )

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        self.http_requests.labels(method, route, str(status)).inc()
        self.http_seconds.labels(method, route).observe(seconds)
        if not route.endswith(LONG_LIVED):
            self.recent.add(seconds)

    def recent_p99(self) -> float | None:
        """The p99 of the last 30 s of requests, seconds (None: too few to tell)."""
        return self.recent.quantile(0.99)

    def observe_git(self, subcommand: str, outcome: str, seconds: float) -> None:
        """Count one finished git command (the runner's observer)."""
        self.git_commands.labels(subcommand, outcome).inc()
        self.git_seconds.labels(subcommand).observe(seconds)

    def observe_sqlite_maintenance(self, task: str, seconds: float) -> None:
        """Record one SQLite maintenance task: its duration and when it ran."""
        self.sqlite_maintenance_seconds.labels(task).observe(seconds)
        self.sqlite_maintenance_last.labels(task).set_to_current_time()

    def observe_sqlite_wal(self, frames: int, checkpointed: int) -> None:
        """Record the WAL's size in frames after a checkpoint, and how many remain to copy."""
        self.sqlite_wal_frames.labels("all").set(frames)
        self.sqlite_wal_frames.labels("pending").set(frames - checkpointed)

    def reader_pool_lookup(self, *, hit: bool) -> None:
        """Count one request for a long-lived reader (a `catfile.PoolObserver`)."""
        (self.reader_pool_hits if hit else self.reader_pool_misses).inc()

    def reader_pool_eviction(self, reason: str) -> None:
        """Count one reader the pool ended."""
        self.reader_pool_evictions.labels(reason).inc()

    def reader_pool_size(self, *, readers: int, resident_bytes: int) -> None:
        """The pool's size now."""
        self.reader_pool_readers.set(readers)
        self.reader_pool_resident.set(resident_bytes)

    def watch_caches(self, stats: Callable[[], dict[str, tuple[int, int, int]]]) -> None:
        """Expose the in-memory caches' hits, misses and entries (`Caches.stats`) when scraped."""
        self.registry.register(_CacheCollector(stats))

    def commit_read(self, *, in_process: bool) -> None:
        """Count one commit asked for (a `catfile.PoolObserver`)."""
        self.commit_reads.labels("in-process" if in_process else "git").inc()

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)


class _CacheCollector(Collector):
    """The caches' counts, read at each scrape rather than pushed at each lookup."""

    def __init__(self, stats: Callable[[], dict[str, tuple[int, int, int]]]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        hits = CounterMetricFamily(
            "repodepot_cache_hits", "Lookups answered from memory, by cache.", labels=["cache"]
        )
        misses = CounterMetricFamily(
            "repodepot_cache_misses", "Lookups that read the database, by cache.", labels=["cache"]
        )
        entries = GaugeMetricFamily(
            "repodepot_cache_entries", "Entries kept now, by cache.", labels=["cache"]
        )
        for name, (hit, missed, kept) in sorted(self._stats().items()):
            hits.add_metric([name], hit)
            misses.add_metric([name], missed)
            entries.add_metric([name], kept)
        yield from (hits, misses, entries)
