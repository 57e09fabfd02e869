"""Peak resident memory of this process while a block runs, sampled in a background thread."""

from __future__ import annotations

import gc
import threading
import time

import psutil


class PeakRSS:
    """Peak resident memory of this process, sampled every 5 ms."""

    def __init__(self) -> None:
        self._proc = psutil.Process()
        self.baseline = self.peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(0.005)

    def __enter__(self) -> PeakRSS:
        gc.collect()
        self.baseline = self.peak = self._proc.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)
