"""`GET /pilots`, `GET /pilots/{pilot}`, `GET /pilots/{pilot}/devices`."""

from fastapi import APIRouter

from api.auth import ReadAccess
from api.deps import PilotDep, RegistryDep, SettingsDep, StoreDep
from api.problems import responses
from api.schemas import DeviceOut, PilotOut
from api.services import pilots as service

router = APIRouter(tags=["pilots"])

ONE_PILOT = responses(401, 404, 422, 503, _404="unknown pilot")


@router.get("/pilots", responses=responses(401, 503))
def list_pilots(
    _: ReadAccess, registry: RegistryDep, store: StoreDep, settings: SettingsDep
) -> list[PilotOut]:
    """Every pilot: devices, how many are online, newest reading, today's completeness."""
    limit = settings.api_max_scan_readings
    return [service.pilot_summary(registry, store, p, limit) for p in registry.pilot_list]


@router.get("/pilots/{pilot}", responses=ONE_PILOT)
def get_pilot(
    _: ReadAccess, pilot: PilotDep, registry: RegistryDep, store: StoreDep, settings: SettingsDep
) -> PilotOut:
    """One pilot."""
    return service.pilot_summary(registry, store, pilot, settings.api_max_scan_readings)


@router.get("/pilots/{pilot}/devices", responses=ONE_PILOT)
def list_devices(
    _: ReadAccess, pilot: PilotDep, registry: RegistryDep, store: StoreDep, settings: SettingsDep
) -> list[DeviceOut]:
    """The pilot's devices: status, last report, battery, link quality, completeness today."""
    return service.device_list(registry, store, pilot, settings.api_max_scan_readings)
