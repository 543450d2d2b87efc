"""Progress of `relocate move`, three ways, chosen once:

- `--json`: NDJSON events on **stderr**, one JSON object per line, so stdout stays the
  single final JSON document CI scripts already parse. Events:
  `{"event": "phase", "phase": "objects"|"env"|"verify"|...}`,
  `{"event": "progress", "objects": n, "total_objects": N, "bytes": b, "total_bytes": B, "rate": bytes/s, "eta_s": s}`
  (on a count's change, at most once a second, and when the last object is counted),
  `{"event": "item", "bucket", "key", "path", "size", "sha256"}` per object, a batch's together,
  `{"event": "warning", "message": "..."}` (e.g. a batch retried on a new connection).
  The hook is called with (step, 0, bytes) as object bodies stream into the lanes (negative
  when a batch goes again) and with (step, objects, 0) once a batch is in place and
  journalled (execute/objects.py): `objects` moves a batch at a time (docs/json.md).
- a terminal on stderr: rich progress bar (bytes, objects, rate, ETA).
- otherwise: a plain line every few seconds (CI logs stay short).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import IO, Any

from relocate.cli.jsondoc import document
from relocate.plan.build import human_bytes


class Reporter:
    """Callable as the move's progress hook `(step, objects, bytes)`; `event` takes the rest."""

    def __init__(self, total_objects: int, total_bytes: int, *, mode: str, stream: IO[str] | None = None,
                 every_s: float | None = None) -> None:
        self.total_objects, self.total_bytes = total_objects, total_bytes
        self.objects = self.bytes = 0
        self.mode = mode  # "json" | "rich" | "plain" | "quiet"
        self.stream = stream or sys.stderr
        self.every = every_s if every_s is not None else (1.0 if mode == "json" else 3.0)
        self.start = self.last = time.monotonic()
        self.lock = threading.Lock()  # lanes report from several threads
        self._bar: Any = None
        self._task: Any = None
        if mode == "rich":
            from rich.console import Console
            from rich.progress import (BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeRemainingColumn, TransferSpeedColumn)

            self._bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                                 TextColumn("{task.fields[objects]}"), TimeRemainingColumn(),
                                 console=Console(file=self.stream), transient=False)
            self._task = self._bar.add_task("objects", total=max(total_bytes, 1), objects=f"0/{total_objects}")
            self._bar.start()

    @classmethod
    def choose(cls, total_objects: int, total_bytes: int, *, as_json: bool) -> "Reporter":
        if as_json:
            return cls(total_objects, total_bytes, mode="json")
        return cls(total_objects, total_bytes, mode="rich" if sys.stderr.isatty() else "plain")

    def __call__(self, step: str, n: int, b: int) -> None:
        with self.lock:
            self.objects += n
            self.bytes += b
            now = time.monotonic()
            final = self.objects >= self.total_objects and n > 0
            if self.mode == "rich":
                self._bar.update(self._task, completed=max(self.bytes, 0), objects=f"{self.objects}/{self.total_objects}")
            elif now - self.last >= self.every or final:
                self.last = now
                self._emit_progress(now)

    def retotal(self, total_objects: int, total_bytes: int) -> None:
        """New totals (a shard worker's range as listed, not as planned): shown at once."""
        with self.lock:
            if (total_objects, total_bytes) == (self.total_objects, self.total_bytes):
                return
            self.total_objects, self.total_bytes = total_objects, total_bytes
            if self.mode == "rich":
                self._bar.update(self._task, total=max(total_bytes, 1), objects=f"{self.objects}/{self.total_objects}")
            elif self.mode in ("json", "plain"):
                now = time.monotonic()
                self.last = now
                self._emit_progress(now)

    def _emit_progress(self, now: float) -> None:
        rate = max(self.bytes, 0) / max(now - self.start, 1e-6)
        left = max(self.total_bytes - self.bytes, 0)
        if self.mode == "json":
            self._line({"event": "progress", "objects": self.objects, "total_objects": self.total_objects,
                        "bytes": self.bytes, "total_bytes": self.total_bytes, "rate": round(rate),
                        "eta_s": round(left / rate, 1) if rate > 0 else None})
        elif self.mode == "plain":
            print(f"progress: {self.objects}/{self.total_objects} objects, {human_bytes(max(self.bytes, 0))}/"
                  f"{human_bytes(self.total_bytes)}, {human_bytes(rate)}/s", file=self.stream, flush=True)

    def event(self, ev: dict[str, Any]) -> None:
        with self.lock:
            if self.mode == "json":
                self._line(ev)
            elif ev.get("event") == "warning":
                msg = f"warning: {ev.get('message')}"
                if self.mode == "rich":
                    self._bar.console.print(msg, markup=False)
                elif self.mode == "plain":
                    print(msg, file=self.stream, flush=True)

    def _line(self, ev: dict[str, Any]) -> None:
        self.stream.write(json.dumps(document(ev), ensure_ascii=False) + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
