"""Progress reporting: a tqdm bar on a terminal, plain periodic lines otherwise.

``--quiet`` on any script (or ``UNET_INFER_QUIET=1`` in the environment, which the driver
passes down) silences both.
"""

import os
import sys
import time

from tqdm import tqdm

_QUIET = False


def set_quiet(quiet):
    """Silence (or restore) every progress display of this process."""
    global _QUIET
    _QUIET = bool(quiet)


def is_quiet():
    return _QUIET or os.environ.get("UNET_INFER_QUIET", "") not in ("", "0")


class _PlainProgress:
    """A minimal tqdm stand-in that logs ``desc: n/total`` lines at most every ``interval`` s."""

    def __init__(self, iterable=None, total=None, desc="", interval=10.0, stream=None):
        self.iterable = iterable
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.desc = desc
        self.n = 0
        self.interval = interval
        self.stream = stream or sys.stderr
        self._start = self._last = time.monotonic()
        self.postfix = ""

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def set_postfix_str(self, text, refresh=True):
        self.postfix = text

    def _line(self):
        total = f"/{self.total}" if self.total is not None else ""
        elapsed = time.monotonic() - self._start
        extra = f" {self.postfix}" if self.postfix else ""
        return f"{self.desc}: {self.n}{total} ({elapsed:.1f} s){extra}"

    def update(self, n=1):
        self.n += n
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._print()

    def _print(self):
        self._last = time.monotonic()
        self._printed = self.n
        print(self._line(), file=self.stream, flush=True)

    def close(self):
        if self.n and self.n != getattr(self, "_printed", None):
            self._print()


class _Silent(_PlainProgress):
    def update(self, n=1):
        self.n += n

    def close(self):
        pass


def progress(iterable=None, total=None, desc="", unit="it"):
    """Wrap ``iterable`` (or count ``total`` manual updates) with the right kind of progress display."""
    if is_quiet():
        return _Silent(iterable, total=total, desc=desc)
    if sys.stderr.isatty():
        return tqdm(iterable, total=total, desc=desc, unit=unit, dynamic_ncols=True)
    return _PlainProgress(iterable, total=total, desc=desc)
