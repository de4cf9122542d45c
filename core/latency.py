"""Late readings: which readings reached us long after their device time, as boolean arrays.

A reading travels in an uplink of the same device with the same device time (one uplink
carries one reading per sensor); the uplink's `received_ns` is when ingest got it. A gateway's
backlog arriving hours later is the case this exists for (docs/DOMAIN.md, "Faults real fleets
show"). The flag joins the two batches by (device, device time) with one sort, in whole-array
numpy.

Latency statistics per device are `core.quality.latency`, and the latency of one uplink is
`Uplinks.latency_ns`; this module does not repeat them. It must not loop over readings in
Python, read the store or choose the lateness limit: the caller passes it per device.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from core.quality import NEVER_NS, PerDevice
from core.readings import Readings
from core.timeutil import NS_PER_S
from core.uplinks import Uplinks

I64 = NDArray[np.int64]
Bools = NDArray[np.bool_]


def first_receipt_ns(readings: Readings, uplinks: Uplinks) -> I64:
    """When the uplink carrying each reading was first received, in the batch's order.

    The carrying uplink is the one with the reading's device and device time (`ts_ns`); when
    that uplink is there several times (a retransmission, a webhook retry) the earliest
    `received_ns` counts, since the reading was available from then. `NEVER_NS` marks a
    reading that no uplink in `uplinks` carried.
    """
    n, m = len(readings), len(uplinks)
    out = np.full(n, NEVER_NS, dtype=np.int64)
    if n == 0 or m == 0:
        return out
    device = np.concatenate((uplinks.device, readings.device)).astype(np.int64)
    ts = np.concatenate((uplinks.ts_ns, readings.ts_ns))
    received = np.concatenate((uplinks.received_ns, np.zeros(n, dtype=np.int64)))
    is_reading = np.concatenate((np.zeros(m, np.bool_), np.ones(n, np.bool_)))
    # Within one (device, time) the uplinks come first, earliest receipt first: the head of
    # each key's run is its earliest uplink, if it has any.
    order = np.lexsort((received, is_reading, ts, device))
    device, ts, received, is_reading = device[order], ts[order], received[order], is_reading[order]
    begins = np.ones(n + m, dtype=np.bool_)
    begins[1:] = (device[1:] != device[:-1]) | (ts[1:] != ts[:-1])
    head = np.maximum.accumulate(np.where(begins, np.arange(n + m), 0))
    carried = is_reading & ~is_reading[head]
    out[order[carried] - m] = received[head[carried]]
    return out


def late(readings: Readings, uplinks: Uplinks, *, after_s_of_device: PerDevice) -> Bools:
    """Readings received more than their device's limit after their device time.

    A reading is late when `first_receipt_ns - ts_ns > after_s_of_device[device] * 1e9`
    (strictly more; one limit for all devices when a number is passed, else indexed by device
    code). Readings that no uplink in `uplinks` carried are not late, nor are readings whose
    device clock runs ahead of the receipt (a negative latency). Result in the batch's order.
    """
    after_s = np.asarray(after_s_of_device, dtype=np.float64)
    if not bool(np.all(after_s >= 0)):
        raise ValueError("after_s_of_device must be at least 0 seconds for every device")
    receipt = first_receipt_ns(readings, uplinks)
    carried = receipt != NEVER_NS
    # Uncarried readings get a latency of 0, which no limit (>= 0) exceeds.
    delay_ns = np.where(carried, receipt, readings.ts_ns) - readings.ts_ns
    limit_s = after_s if after_s.ndim == 0 else after_s[readings.device]
    flagged: Bools = delay_ns > limit_s * NS_PER_S
    return flagged
