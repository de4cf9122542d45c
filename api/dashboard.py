"""The dashboard page at `/` and the files it loads from `/static` (both open, no token).

The page (`api/static/dashboard.html`) asks the API for its data with the reader's token, or
without one for published pilots (`api.access`). Its charts (`static/charts.js`, the vendored
uPlot) and map (`static/map.js`, the vendored Leaflet) are served from the package, never from
a CDN. The map draws on a plain background unless `PILOTS_API_MAP_TILES` names a tile server:
the page is then told its URL and attribution and its Content-Security-Policy lets it load
those images. This module must not read the store.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from importlib import resources

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from core.errors import ConfigError
from core.settings import Settings

#: Where the files of `api/static/` are served (open: the dashboard's scripts and styles).
STATIC_URL = "/static"


def install(app: FastAPI, settings: Settings) -> None:
    """Serve the dashboard page at `/` and `api/static/` at `STATIC_URL`."""
    tiles = map_tiles(settings.api_map_tiles)

    @app.get("/", include_in_schema=False, response_class=HTMLResponse)
    def page() -> HTMLResponse:
        text = resources.files("api").joinpath("static/dashboard.html").read_text("utf-8")
        return HTMLResponse(dashboard_page(text, tiles))

    app.mount(STATIC_URL, StaticFiles(packages=[("api", "static")]), name="static")


@dataclass(frozen=True, slots=True)
class MapTiles:
    """The dashboard map's tile layer (`PILOTS_API_MAP_TILES`): URL template and attribution."""

    url: str
    attribution: str
    origin: str  # for the page's Content-Security-Policy; `{s}` subdomains become `*`


_TILE_ORIGIN = re.compile(r"^https?://(?:\{s\}\.|\*\.)?[A-Za-z0-9.-]+(?::[0-9]{1,5})?$")
#: Placeholders the dashboard page holds for `dashboard_page` (each exactly once).
_MAP_META = '<meta name="pilots-map-tiles" content="">'
_IMG_SRC = "img-src data:;"


def map_tiles(setting: str | None) -> MapTiles | None:
    """The tile layer from the setting's text: a URL template, then optionally its attribution.

    `https://tile.openstreetmap.org/{z}/{x}/{y}.png © OpenStreetMap contributors`: the URL
    (no spaces) must hold `{z}`, `{x}` and `{y}` under an http(s) origin. None when unset: the
    map then draws on a plain background and loads nothing from elsewhere.
    """
    if setting is None or not setting.strip():
        return None
    url, _, attribution = setting.strip().partition(" ")
    origin = url[: url.find("/", len("https://"))] if url.count("/") >= 3 else url
    if not all(part in url for part in ("{z}", "{x}", "{y}")) or not _TILE_ORIGIN.match(origin):
        raise ConfigError(
            f"PILOTS_API_MAP_TILES: {url!r} is not a tile URL template: it must start with "
            "https:// (or http://), a host, and hold {z}, {x} and {y} "
            "(https://tile.openstreetmap.org/{z}/{x}/{y}.png), then optionally the attribution"
        )
    return MapTiles(url, attribution.strip(), origin.replace("{s}", "*"))


def dashboard_page(page: str, tiles: MapTiles | None) -> str:
    """The dashboard page, told about the tile layer and allowed to load its images."""
    if tiles is None:
        return page
    config = json.dumps({"url": tiles.url, "attribution": tiles.attribution})
    meta = f'<meta name="pilots-map-tiles" content="{html.escape(config, quote=True)}">'
    return page.replace(_MAP_META, meta, 1).replace(_IMG_SRC, f"img-src data: {tiles.origin};", 1)
