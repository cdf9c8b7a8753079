"""What a dataset check found, for every task: problems by kind and severity, a table and JSON.

A task's report (detection's :class:`~vision_core.data.detection.checks.DatasetReport`,
classification's :class:`~vision_core.data.classification.checks.ClassificationReport`) is a
dataclass with ``source``, ``split``, ``num_images`` and ``issues`` (each with ``kind``, ``path``,
``message``, ``count`` and a ``severity``) that mixes in :class:`CheckReport` and says what
else it counts (:meth:`CheckReport.totals`, :meth:`CheckReport.summary`).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict
from typing import Any, ClassVar

ERROR = "error"
WARNING = "warning"


class CheckReport:
    """Counts, severity, ``to_dict`` / ``to_json`` and the printed table of a dataset check."""

    kinds: ClassVar[dict[str, str]]  # every kind of problem the check reports -> its severity, in report order
    source: str
    split: str
    num_images: int
    issues: list

    def totals(self) -> dict[str, Any]:
        """What the dataset holds besides its images, for :meth:`to_dict` (e.g. boxes per class)."""
        return {}

    def summary(self) -> list[str]:
        """The table's first lines: what was checked and what it holds."""
        return [f"split {self.split!r}: {self.source}", f"{self.num_images} images"]

    @property
    def counts(self) -> dict[str, int]:
        """Problems per kind (an issue may stand for several), in :attr:`kinds` order."""
        totals: Counter = Counter()
        for issue in self.issues:
            totals[issue.kind] += issue.count
        return {kind: totals[kind] for kind in self.kinds if totals[kind]}

    @property
    def errors(self) -> list:
        return [i for i in self.issues if i.severity == ERROR]

    @property
    def warnings(self) -> list:
        return [i for i in self.issues if i.severity == WARNING]

    @property
    def ok(self) -> bool:
        """No error was found (warnings do not fail a check)."""
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            **self.totals(),
            "counts": self.counts,
            "issues": [{**asdict(issue), "severity": issue.severity} for issue in self.issues],
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def table(self, max_listed: int = 10) -> str:
        """A readable summary: totals, a count per kind, then up to ``max_listed`` problems of each kind."""
        lines = [*self.summary(), ""]
        counts = self.counts
        if counts:
            lines.append(f"{'problem':<22}{'severity':<10}{'count':>7}")
            lines += [f"{kind:<22}{self.kinds[kind]:<10}{count:>7}" for kind, count in counts.items()]
            lines.append("")
        for kind in counts:
            listed = [i for i in self.issues if i.kind == kind]
            lines.append(f"{kind} ({len(listed)} {'entry' if len(listed) == 1 else 'entries'}):")
            lines += [f"  {issue.path}: {issue.message}" for issue in listed[:max_listed]]
            if len(listed) > max_listed:
                lines.append(f"  ... and {len(listed) - max_listed} more (see the JSON report)")
        errors, warnings = sum(i.count for i in self.errors), sum(i.count for i in self.warnings)
        lines.append(f"{'OK' if self.ok else 'FAILED'}: {errors} error(s), {warnings} warning(s)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()
