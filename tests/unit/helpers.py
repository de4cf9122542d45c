"""Shared helpers of the unit tests: the shipped registry, and one message through ingest."""

from __future__ import annotations

import tomllib
from functools import cache

import orjson

from core.registry import DEFAULT_REGISTRY_PATH, Registry, build_registry, load_registry
from core.settings import Settings
from ingest.decoders import Router
from ingest.process import process
from ingest.reasons import Reason
from ingest.validate import Checked, Validator


@cache
def shipped_registry() -> Registry:
    """The registry that ships with the project (`core/registry.toml`)."""
    return load_registry()


def process_message(
    document: object, topic: str, received_ns: int, registry: Registry | None = None
) -> Checked:
    """What ingest makes of one message (a document, or raw bytes) received at `received_ns`."""
    payload = document if isinstance(document, bytes) else orjson.dumps(document)
    validator = Validator(registry or shipped_registry(), max_future_s=600, max_age_days=3650)
    settings = Settings(_env_file=None)
    return process(
        Router(settings.ingest_routes),
        validator,
        topic,
        payload,
        received_ns,
        max_payload_bytes=settings.ingest_max_payload_bytes,
    )


def accepted(
    checked: Checked, registry: Registry | None = None
) -> dict[tuple[str, str, int], float]:
    """Accepted readings as {(device id, sensor id, ts_ns): value}."""
    reg = registry or shipped_registry()
    return {
        (reg.device_list[d].id, reg.sensor_list[s].id, t): v
        for t, d, s, v in zip(
            checked.ts_ns, checked.device, checked.sensor, checked.value, strict=True
        )
    }


def only_uplink(
    checked: Checked, registry: Registry | None = None
) -> tuple[str, int, int, float, float, int, str]:
    """The one accepted uplink as (device id, ts_ns, fcnt, rssi, snr, sf, gateway)."""
    reg = registry or shipped_registry()
    assert len(checked.up_ts_ns) == 1, checked
    return (
        reg.device_list[checked.up_device[0]].id,
        checked.up_ts_ns[0],
        checked.up_fcnt[0],
        checked.up_rssi[0],
        checked.up_snr[0],
        checked.up_sf[0],
        checked.up_gateway[0],
    )


def only_refusal(checked: Checked) -> tuple[Reason, str]:
    """The reason and detail of the one refusal of a message that was refused whole."""
    assert checked.value == []
    assert checked.up_ts_ns == []
    [rejection] = checked.rejections
    return rejection.reason, rejection.detail


def registry_with_lns_id(pilot: str, device_id: str, lns_id: str) -> Registry:
    """The shipped fleet, but one device known only by its network-server id (no EUI)."""
    raw = tomllib.loads(DEFAULT_REGISTRY_PATH.read_text(encoding="utf-8"))
    device = next(d for d in raw["pilots"][pilot]["devices"] if d["id"] == device_id)
    del device["dev_eui"]
    device["lns_id"] = lns_id
    return build_registry(raw, DEFAULT_REGISTRY_PATH)
