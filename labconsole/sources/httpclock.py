"""A remote host's clock offset from the HTTP `Date` headers of its replies (whole seconds).

A reply stamped Date = D was produced while the remote clock read D..D+1, between our send t1 and
receipt t2, so offset = remote - local lies in [D - t2, D + 1 - t1]. Intersecting the bounds of
many replies (taken at random phases against the second) narrows them to well under a second;
the midpoint is the estimate. Used by the HTTP drivers (Redfish BMCs, Prometheus) so that a
fleet run records each node's offset.
"""

from __future__ import annotations

import email.utils
import math


class ClockBounds:
    """The intersection of [Date - t2, Date + 1 - t1] over replies (see the module's docstring)."""

    def __init__(self) -> None:
        self.lo, self.hi = -math.inf, math.inf

    def add(self, date_header: str | None, t1: float, t2: float) -> None:
        if not date_header:
            return
        try:
            remote = email.utils.parsedate_to_datetime(date_header).timestamp()
        except (TypeError, ValueError, IndexError):
            return
        lo, hi = remote - t2, remote + 1.0 - t1
        if max(self.lo, lo) <= min(self.hi, hi):
            self.lo, self.hi = max(self.lo, lo), min(self.hi, hi)
        else:  # the BMC's clock stepped: start again from this reply
            self.lo, self.hi = lo, hi

    def estimate(self) -> float | None:
        if not (math.isfinite(self.lo) and math.isfinite(self.hi)):
            return None
        return (self.lo + self.hi) / 2

    def uncertainty(self) -> float | None:
        return (self.hi - self.lo) / 2 if math.isfinite(self.lo) and math.isfinite(self.hi) else None

    def correction(self) -> float:
        """The offset to apply to the remote host's timestamps: the bound nearest zero when the
        bounds exclude zero, else 0 (an uncertain estimate applied would add error, not remove it)."""
        if math.isfinite(self.lo) and self.lo > 0:
            return self.lo
        if math.isfinite(self.hi) and self.hi < 0:
            return self.hi
        return 0.0
