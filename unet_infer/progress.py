"""Progress reporting: a tqdm bar on a terminal, plain periodic lines otherwise.

``--quiet`` on any script (or ``UNET_INFER_QUIET=1`` in the environment, which the driver
passes down) silences both.
"""

import os
import sys
import time

_QUIET = False


def set_quiet(quiet):
    """Silence (or restore) every progress display of this process."""
    global _QUIET
    _QUIET = bool(quiet)


def is_quiet():
    return _QUIET or os.environ.get("UNET_INFER_QUIET", "") not in ("", "0")


class _PlainProgress:
    """The part of tqdm the package uses, as ``desc: n/total (t s)`` lines on stderr: at most one
    every 10 s, and one at the end."""

    def __init__(self, iterable=None, total=None, desc=""):
        self.iterable, self.desc, self.n, self.postfix, self._printed = iterable, desc, 0, "", None
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self._start = self._last = time.monotonic()

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def set_postfix_str(self, text):
        self.postfix = text

    def update(self, n=1):
        self.n += n
        if time.monotonic() - self._last >= 10.0:
            self._print()

    def _print(self):
        self._last, self._printed = time.monotonic(), self.n
        total = f"/{self.total}" if self.total is not None else ""
        extra = f" {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {self.n}{total} ({self._last - self._start:.1f} s){extra}", file=sys.stderr, flush=True)

    def close(self):
        if self.n and self.n != self._printed:
            self._print()


def progress(iterable=None, total=None, desc="", unit="it"):
    """Wrap ``iterable`` (or count ``total`` manual updates) with the right kind of progress display."""
    from tqdm import tqdm  # here, not at the top: the driver's many short commands do without it
    if is_quiet():
        return tqdm(iterable, total=total, disable=True)
    if sys.stderr.isatty():
        return tqdm(iterable, total=total, desc=desc, unit=unit, dynamic_ncols=True)
    return _PlainProgress(iterable, total=total, desc=desc)
