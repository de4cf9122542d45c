"""`GET /pilots`, `GET /pilots/{pilot}`, `GET /pilots/{pilot}/devices`."""

import time

from fastapi import APIRouter

from api.access import PublicPilotDep, PublicReadAccess, unauthorized
from api.deps import RegistryDep, SettingsDep, StoreDep
from api.problems import responses
from api.schemas import DeviceOut, PilotOut
from api.services import pilots as service

router = APIRouter(tags=["pilots"])

ONE_PILOT = responses(401, 404, 422, 503, _404="unknown pilot")


@router.get("/pilots", responses=responses(401, 503))
def list_pilots(
    reader: PublicReadAccess, registry: RegistryDep, store: StoreDep, settings: SettingsDep
) -> list[PilotOut]:
    """Every pilot: devices, how many are online, newest reading, today's completeness.

    Without a token: the pilots published up to now; 401 when there are none (the default).
    """
    limit = settings.api_max_scan_readings
    now = time.time_ns()
    shown = [
        p
        for p in registry.pilot_list
        if not reader.anonymous or (p.public is not None and p.public.covers(now - 1, now))
    ]
    if reader.anonymous and not shown:
        raise unauthorized("no pilot is public")
    return [
        service.pilot_summary(registry, store, p, limit, since_ns=reader.since(p)) for p in shown
    ]


@router.get("/pilots/{pilot}", responses=ONE_PILOT)
def get_pilot(
    reader: PublicReadAccess,
    pilot: PublicPilotDep,
    registry: RegistryDep,
    store: StoreDep,
    settings: SettingsDep,
) -> PilotOut:
    """One pilot (without a token: a pilot published up to now)."""
    reader.live(pilot)
    limit = settings.api_max_scan_readings
    return service.pilot_summary(registry, store, pilot, limit, since_ns=reader.since(pilot))


@router.get("/pilots/{pilot}/devices", responses=ONE_PILOT)
def list_devices(
    reader: PublicReadAccess,
    pilot: PublicPilotDep,
    registry: RegistryDep,
    store: StoreDep,
    settings: SettingsDep,
) -> list[DeviceOut]:
    """The pilot's devices: status, last report, battery, link quality, completeness today.

    Without a token: a pilot published up to now.
    """
    reader.live(pilot)
    limit = settings.api_max_scan_readings
    return service.device_list(registry, store, pilot, limit, since_ns=reader.since(pilot))
