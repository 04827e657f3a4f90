"""Per-sample results as JSONL, appended and flushed as each sample finishes, so a run can resume.

Line 1 is a header `{"type": "header", "fingerprint": {...}}` with everything that changes answers
(model, backend, suite, sampling, thinking, budget, prompt version). Every other line is one sample
`{"type": "sample", "id": ..., ...}`. On resume, samples with a record and no `error` are skipped;
failed ones are retried (the newest record of an id wins). A half-written last line (a killed run)
is ignored. A different fingerprint refuses to resume rather than mix settings (pick another
--out, or --restart).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any


class FingerprintMismatch(ValueError):
    pass


def read_records(path: Path) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """(header, sample records) of a results file; torn lines are skipped."""
    header, records = None, []
    if not path.exists():
        return header, records
    with path.open(encoding="utf-8") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # the torn tail of an interrupted write
            if rec.get("type") == "header":
                header = header or rec
            elif rec.get("type") == "sample":
                records.append(rec)
    return header, records


def latest_by_id(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for rec in records:
        out[str(rec["id"])] = rec
    return out


class ResultsFile:
    """Append-only, thread-safe JSONL of one run. `done` holds ids finished without error."""

    def __init__(self, path: str | Path, fingerprint: dict[str, Any], *, restart: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if restart and self.path.exists():
            self.path.unlink()
        header, records = read_records(self.path)
        fp = json.loads(json.dumps(fingerprint, default=str))
        if header is not None and header.get("fingerprint") != fp:
            diff = {k: (header["fingerprint"].get(k), fp.get(k)) for k in set(fp) | set(header["fingerprint"])
                    if header["fingerprint"].get(k) != fp.get(k)}  # fmt: skip
            raise FingerprintMismatch(
                f"{self.path} holds results of other settings {diff} (old, new): use another --out or --restart"
            )
        self.fingerprint = fp
        self._lock = threading.Lock()
        self._records = latest_by_id(records)
        if header is None or self._torn_tail():
            with self.path.open("a", encoding="utf-8") as f:
                if header is None:
                    f.write(json.dumps({"type": "header", "fingerprint": fp}) + "\n")
                else:
                    f.write("\n")  # end a torn line so the next record starts clean

    def _torn_tail(self) -> bool:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return False
        with self.path.open("rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) != b"\n"

    @property
    def done(self) -> set[str]:
        return {i for i, r in self._records.items() if not r.get("error")}

    def records(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._records.values())

    def append(self, record: dict[str, Any]) -> None:
        rec = {"type": "sample", **record}
        line = json.dumps(rec, default=str, ensure_ascii=False) + "\n"
        with self._lock:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
            self._records[str(rec["id"])] = rec
