"""All routers, collected in one place."""

from fastapi import APIRouter

from api.routes import data, health, pilots, quarantine, report, series

router = APIRouter()
router.include_router(health.router)
router.include_router(pilots.router)
router.include_router(series.router)
router.include_router(report.router)
router.include_router(data.router)
router.include_router(quarantine.router)
