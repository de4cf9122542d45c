/*
  Pilot Telemetry map: a pilot's devices drawn by Leaflet (vendor/leaflet/), a marker each at
  its registry position, coloured by status, with a popup of its latest readings and a scale
  bar. Served at /static/map.js to the dashboard. Needs `L` (Leaflet) and `PilotCharts` (its
  number format) loaded first; requests nothing, and loads no tiles unless the API names a tile
  layer (`PILOTS_API_MAP_TILES`: the server fills the page's `pilots-map-tiles` meta and lets
  its Content-Security-Policy load those images). Without one the markers sit on a plain
  background.

  PilotMap.create(box, page) returns a map drawn into `box` on its first `show`:
    page = {el(tag, attrs, ...children), localTime(iso, timeZone), seen(iso, timeZone)}: the
           page's own helpers, so that popups read like the rest of the page
  map.show(pilot, devices) places the devices of a `/pilots` entry (its `/devices` answer) and
  returns the sentence to show under the map. The view fits a pilot's devices when the pilot
  changes; a refresh keeps the view and the popup the visitor opened.
  - zoom: the buttons, a double-click, or Ctrl (or ⌘) + mouse wheel (a plain wheel scrolls the
    page, as on the charts).
*/
(function () {
  "use strict";

  const STATUS_WORDS = {online: "online", silent: "silent", never: "never reported"};

  // The tile layer the API was told to use (PILOTS_API_MAP_TILES), or none.
  function tiles() {
    const meta = document.querySelector('meta[name="pilots-map-tiles"]');
    try { return meta && meta.content ? JSON.parse(meta.content) : null; } catch (_) { return null; }
  }

  function sensorName(pilot, id) {
    const sensor = pilot.sensors.find((s) => s.id === id);
    return sensor ? sensor.name : id === "battery_v" ? "Battery" : id;
  }

  function popup(device, pilot, page) {
    const {el, localTime, seen} = page;
    const rows = Object.entries(device.latest || {}).map(([sensor, r]) => el("tr", {"data-sensor": sensor},
      el("th", {scope: "row"}, sensorName(pilot, sensor)),
      el("td", {class: "n value"}, `${PilotCharts.number(r.value)} ${r.unit}`.trim()),
      el("td", {class: "at"}, localTime(r.at, pilot.timezone))));
    return el("div", {class: "map-popup", "data-device": device.id},
      el("h4", {}, device.id),
      el("p", {}, `${device.kind.replaceAll("_", " ")} · ${device.site}`),
      el("p", {}, el("span", {class: `status ${device.status}`}, STATUS_WORDS[device.status] || device.status),
        ` last seen ${seen(device.last_seen, pilot.timezone)}`),
      rows.length
        ? el("table", {}, el("caption", {}, "Latest readings"), el("tbody", {}, ...rows))
        : el("p", {class: "muted"}, "No readings yet."));
  }

  function create(box, page) {
    const map = {leaflet: null, layer: null, pilot: null, open: null, tiles: tiles()};

    function start() {
      // A plain wheel scrolls the page; Ctrl (or ⌘) + wheel zooms the map, as on the charts.
      map.leaflet = L.map(box, {attributionControl: Boolean(map.tiles), zoomSnap: 0.25,
        scrollWheelZoom: false});
      box.addEventListener("wheel", (event) => {
        if (!(event.ctrlKey || event.metaKey)) return;
        event.preventDefault();
        const at = map.leaflet.mouseEventToContainerPoint(event);
        map.leaflet.setZoomAround(at, map.leaflet.getZoom() + (event.deltaY < 0 ? 0.5 : -0.5));
      }, {passive: false});
      L.control.scale({imperial: false, maxWidth: 160}).addTo(map.leaflet);
      if (map.tiles) {
        L.tileLayer(map.tiles.url, {attribution: map.tiles.attribution || "", maxZoom: 19}).addTo(map.leaflet);
      }
      map.layer = L.layerGroup().addTo(map.leaflet);
      map.leaflet.on("popupopen", (e) => { map.open = e.popup.options.device; });
      map.leaflet.on("popupclose", (e) => { if (map.open === e.popup.options.device) map.open = null; });
    }

    // A marker per device at its registry position. Devices at one site stack downwards from
    // it, so that each can be clicked.
    function show(pilot, devices) {
      if (!map.leaflet) start();
      map.leaflet.invalidateSize();
      map.layer.clearLayers();
      const placed = devices.filter((d) => Number.isFinite(d.lat) && Number.isFinite(d.lon));
      // The view first: Leaflet adds markers to a map only once it has one.
      if (map.pilot !== pilot.id && placed.length) {
        map.pilot = pilot.id;
        map.open = null;
        const bounds = L.latLngBounds(placed.map((d) => [d.lat, d.lon]));
        map.leaflet.fitBounds(bounds.pad(0.25), {maxZoom: 15, animate: false});
      } else if (!placed.length) {
        map.pilot = null;
        map.leaflet.setView([0, 0], 1, {animate: false});
      }
      const sites = new Map();
      const markers = [];
      for (const device of placed) {
        const key = `${device.lat},${device.lon}`;
        const below = sites.get(key) || 0;
        sites.set(key, below + 1);
        const html = page.el("span", {}, page.el("span", {class: "dot"}),
          page.el("span", {class: "name"}, device.id));
        const marker = L.marker([device.lat, device.lon], {
          icon: L.divIcon({className: `device-marker ${device.status}`, html: html.innerHTML,
            iconSize: null, iconAnchor: [7, 7 - below * 20]}),
          title: `${device.id}: ${STATUS_WORDS[device.status] || device.status}`,
          riseOnHover: true,
        });
        marker.bindPopup(() => popup(device, pilot, page), {device: device.id, minWidth: 220});
        marker.addTo(map.layer);
        const node = marker.getElement();
        node.setAttribute("data-device", device.id);
        node.setAttribute("data-status", device.status);
        node.setAttribute("data-lat", String(device.lat));
        node.setAttribute("data-lon", String(device.lon));
        markers.push([device.id, marker]);
      }
      // A refresh keeps the popup the visitor opened.
      const open = markers.find(([id]) => id === map.open);
      if (open) open[1].openPopup();
      const missing = devices.length - placed.length;
      return `${placed.length} of ${devices.length} devices placed at their ` +
        `registry positions${missing ? ` (${missing} without one)` : ""}; click a marker for its ` +
        `status and latest readings. ` +
        (map.tiles ? "" : "No background map is loaded (an operator can set PILOTS_API_MAP_TILES).");
    }

    return {show};
  }

  window.PilotMap = {create};
})();
