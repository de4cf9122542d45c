"""All routers, collected in one place: one module per resource, in the OpenAPI page's order.

To add a resource: a module here with its `router`, and one line below.
"""

from fastapi import APIRouter

from api import sta
from api.routes import export, health, pilots, quarantine, report, series

router = APIRouter()
router.include_router(health.router)
router.include_router(pilots.router)
router.include_router(series.router)
router.include_router(report.router)
router.include_router(export.router)
router.include_router(quarantine.router)
router.include_router(sta.router)
