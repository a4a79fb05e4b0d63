"""The accept/reject table of a run, by kind and by reason (terminal, Markdown, JSON)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .filters import FILTERS
from .records import Record

__all__ = ["Report", "summarize"]


@dataclass
class Report:
    """Counts over a run's records.

    ``rejected_by``: rejected records per reason (a record rejected for two reasons counts under
    both; one rejected because every pair was dropped counts under its pairs' reasons).
    ``pairs_dropped_by``: question/answer pairs dropped per reason, in every record.
    """

    by_kind: dict[str, Counter[str]] = field(default_factory=dict)
    rejected_by: Counter[str] = field(default_factory=Counter)
    pairs_dropped_by: Counter[str] = field(default_factory=Counter)
    pairs_total: int = 0
    pairs_kept: int = 0
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def totals(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for c in self.by_kind.values():
            out.update(c)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"by_kind": {k: dict(v) for k, v in self.by_kind.items()}, "totals": dict(self.totals),
                "rejected_by": dict(self.rejected_by), "pairs_dropped_by": dict(self.pairs_dropped_by),
                "pairs_total": self.pairs_total, "pairs_kept": self.pairs_kept, "errors": dict(self.errors)}

    def rows(self) -> list[tuple[str, ...]]:
        """The records table: kind, records, accepted, rejected, errors, pairs kept / made."""
        out = []
        for kind, c in [*self.by_kind.items(), ("all", self.totals)]:
            out.append((kind, str(sum(c.values())), str(c["accepted"]), str(c["rejected"]), str(c["error"])))
        return out

    def reason_rows(self) -> list[tuple[str, str, str]]:
        names = [f for f in FILTERS if self.rejected_by[f] or self.pairs_dropped_by[f]]
        names += sorted(set(self.rejected_by) - set(FILTERS))
        return [(f, str(self.rejected_by[f]), str(self.pairs_dropped_by[f])) for f in names]

    def markdown(self) -> str:
        lines = ["| kind | records | accepted | rejected | errors |", "|---|---:|---:|---:|---:|"]
        lines += [f"| {' | '.join(r)} |" for r in self.rows()]
        lines += ["", f"Question/answer pairs: {self.pairs_kept} kept of {self.pairs_total} written.", "",
                  "| reason | records rejected | pairs dropped |", "|---|---:|---:|"]
        lines += [f"| {' | '.join(r)} |" for r in self.reason_rows()] or ["| (none) | 0 | 0 |"]
        if self.errors:
            lines += ["", "Errors: " + "; ".join(f"{n} x {msg}" for msg, n in self.errors.most_common(5))]
        return "\n".join(lines)

    def tables(self) -> list[Any]:
        from rich.table import Table
        from rich.text import Text

        records = Table(title="records")
        for col in ("kind", "records", "accepted", "rejected", "errors"):
            records.add_column(col, justify="left" if col == "kind" else "right")
        for r in self.rows():
            records.add_row(*(Text(c) for c in r))
        reasons = Table(title=f"reasons (pairs kept: {self.pairs_kept} of {self.pairs_total})")
        for col in ("reason", "records rejected", "pairs dropped"):
            reasons.add_column(col, justify="left" if col == "reason" else "right")
        for r in self.reason_rows():
            reasons.add_row(*(Text(c) for c in r))
        return [records, reasons]


def summarize(records: Iterable[Record]) -> Report:
    rep = Report()
    for r in records:
        rep.by_kind.setdefault(r.kind, Counter())[r.status] += 1
        if r.status == "error":
            rep.errors[(r.error or "error")[:120]] += 1
            continue
        rep.pairs_total += len(r.pairs)
        rep.pairs_kept += len(r.kept) if r.status == "accepted" else 0
        rep.pairs_dropped_by.update(f for _, f in {(x.pair, x.filter) for x in r.reasons if x.pair is not None})
        if r.status == "rejected":
            whole = {x.filter for x in r.reasons if x.pair is None}
            rep.rejected_by.update(whole or {x.filter for x in r.reasons})
    return rep
