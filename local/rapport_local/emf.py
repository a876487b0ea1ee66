"""Read the metrics a function printed in CloudWatch embedded metric format, as CloudWatch would.

Lambda sends every stdout line to CloudWatch Logs, and CloudWatch extracts a metric from each line that
carries an `_aws` directive. Locally the lines are captured and read here, so the demo can show the
metrics a deployment would publish and the tests can check them.
"""

from __future__ import annotations

import io
import json
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class MetricDatum:
    namespace: str
    name: str
    unit: str
    value: float
    dimensions: dict[str, str]


def metric_data(line: str) -> list[MetricDatum]:
    """The metric values one log line carries ([] for a line that is not an EMF document)."""
    try:
        document = json.loads(line)
    except ValueError:
        return []
    if not isinstance(document, dict) or not isinstance(document.get("_aws"), dict):
        return []
    data: list[MetricDatum] = []
    for directive in document["_aws"].get("CloudWatchMetrics", []):
        dimension_names = {name for names in directive.get("Dimensions", []) for name in names}
        dimensions = {name: str(document[name]) for name in dimension_names if name in document}
        for metric in directive.get("Metrics", []):
            name = metric["Name"]
            raw = document.get(name)
            values = raw if isinstance(raw, list) else [raw]
            data += [
                MetricDatum(directive["Namespace"], name, metric.get("Unit", "None"), float(v), dimensions)
                for v in values
                if isinstance(v, int | float)
            ]
    return data


@dataclass
class MetricTotals:
    """Counts summed and durations kept, per metric name, over many EMF lines."""

    counts: Counter[str] = field(default_factory=Counter)
    durations_ms: dict[str, list[float]] = field(default_factory=dict)

    def add_lines(self, lines: Iterable[str]) -> list[str]:
        """Take in the metrics among `lines`; returns the lines that were not metrics."""
        others = []
        for line in lines:
            data = metric_data(line)
            if not data:
                others.append(line)
            for datum in data:
                if datum.unit == "Milliseconds":
                    self.durations_ms.setdefault(datum.name, []).append(datum.value)
                else:
                    self.counts[datum.name] += int(datum.value)
        return others


class MetricSink(io.TextIOBase):
    """A stdout replacement that keeps the metrics printed to it and drops everything else.

    Safe across threads: `print` writes each EMF document in one `write` call (the newline comes in
    another), so every document is read whole even when many handlers print at once.
    """

    def __init__(self) -> None:
        super().__init__()
        self.totals = MetricTotals()
        self.documents: list[str] = []
        """Every EMF document printed, as printed."""
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if text.strip():
            with self._lock:
                lines = text.splitlines()
                others = self.totals.add_lines(lines)
                self.documents += [line for line in lines if line not in others]
        return len(text)
