"""`GET /pilots`, `GET /pilots/{pilot}`, `GET /pilots/{pilot}/devices`."""

from fastapi import APIRouter

from api import services
from api.deps import PilotDep, RegistryDep, StoreDep
from api.schemas import DeviceOut, PilotOut

router = APIRouter(tags=["pilots"])


@router.get("/pilots")
def list_pilots(registry: RegistryDep, store: StoreDep) -> list[PilotOut]:
    """Every pilot with its sensors, thresholds and newest reading."""
    return [services.pilot_summary(registry, store, p) for p in registry.pilot_list]


@router.get("/pilots/{pilot}", responses={404: {"description": "unknown pilot"}})
def get_pilot(pilot: PilotDep, registry: RegistryDep, store: StoreDep) -> PilotOut:
    """One pilot."""
    return services.pilot_summary(registry, store, pilot)


@router.get("/pilots/{pilot}/devices", responses={404: {"description": "unknown pilot"}})
def list_devices(pilot: PilotDep, registry: RegistryDep, store: StoreDep) -> list[DeviceOut]:
    """The pilot's devices, each with its sensors, last report and battery voltage."""
    return services.device_list(registry, store, pilot)
