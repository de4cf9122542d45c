"""All routers, collected in one place."""

from fastapi import APIRouter

from api.routes import health, pilots, series

router = APIRouter()
router.include_router(health.router)
router.include_router(pilots.router)
router.include_router(series.router)
