"""The report's device table: each device's delivery, uptime, gaps, latency, battery and radio.

One row per device of the report, with a note that says how each figure was counted. This
module must not compute statistics: every figure is the device report's, only formatted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from api.report_html import markup
from api.report_html.format import DASH, duration, num, pct
from api.report_html.markup import Cell
from api.schemas import DeviceReportOut

_COLUMNS = (
    "Device", "Kind", "Site", "Reports", "Completeness", "Uptime (h)", "Gaps", "Longest gap",
    "Silent now", "PDR", "Sessions", "Repeats", "Latency mean", "Latency p90", "Battery (V)",
    "Slope (V/day)", "Days left", "RSSI (dBm)", "SNR (dB)", "SF mix",
)  # fmt: skip
_ALIGN = "lllrrrrrlrrrrrrrrrrl"


def devices_section(listed: Sequence[DeviceReportOut]) -> str:
    """The Devices section: the table and how to read it, or a note when there are none."""
    if not listed:
        return markup.section("devices", "Devices", markup.note("No devices in this report."))
    table = markup.table("devices", _COLUMNS, _ALIGN, (_device_row(d) for d in listed))
    note = markup.note(
        "Uptime: hours with at least one report / hours in the period. PDR: distinct frame "
        "counters / counter span, per counter session. Repeats: transmissions received again "
        "(retransmissions) and dropped by ingest. Days left: until 3.3 V at the present slope."
    )
    return markup.section("devices", "Devices", table + note)


def _device_row(d: DeviceReportOut) -> list[Cell]:
    return [
        d.device,
        d.kind,
        d.site,
        str(d.reports),
        pct(d.completeness),
        f"{num(d.uptime_hours, 1)} / {num(d.hours, 1)}",
        str(d.gaps),
        duration(d.longest_gap_s),
        ("yes", "warn") if d.silent_now else ("no" if d.silent_now is False else DASH),
        pct(d.pdr),
        str(d.counter_sessions),
        str(d.repeats),
        duration(d.latency_mean_s),
        duration(d.latency_p90_s),
        num(d.battery_last_v),
        num(d.battery_slope_v_per_day),
        num(d.battery_days_left, 1),
        num(d.rssi_median),
        num(d.snr_median),
        _sf_mix(d.sf_mix),
    ]


def _sf_mix(mix: Mapping[str, int]) -> str:
    if not mix:
        return DASH

    def label(key: str) -> str:
        return key if key.upper().startswith("SF") else f"SF{key}"

    def order(key: str) -> tuple[int, str]:
        digits = "".join(ch for ch in key if ch.isdigit())
        return (int(digits) if digits else 99, key)

    return " · ".join(f"{label(k)} {mix[k]}" for k in sorted(mix, key=order))
