/*
  Pilot Telemetry charts: time series drawn by uPlot (vendor/uplot/), with the exploring the
  dashboard and the HTML report share. Served at /static/charts.js to the dashboard; inlined
  into the report (api/report_html/interactive.py). Needs `uPlot` loaded first; requests nothing.

  PilotCharts.chart(target, spec) draws one sensor into `target` and returns the uPlot:
    spec = {unit, timeZone, locale, x: [window starts, epoch s], windowS: window length in s
            (or null), lines: [{label, colour, values, min, max}] (values aligned with x, null
            for no data; min and max optional: a band), levels: [{label, value, colour}] (dashed
            lines), moment: epoch s or null (a dashed vertical line), height, group}
  - zoom: drag across the plot (a box), or Ctrl (or ⌘) + mouse wheel around the pointer (a
    plain wheel scrolls the page, as a reader expects; a trackpad's pinch sends Ctrl + wheel);
  - pan: Shift + drag (or drag with the middle button), after zooming in;
  - double-click: back to the whole range;
  - readout: the legend under the plot shows the window under the pointer, in the pilot's local
    time, and each line's value there with its unit.
  Charts made with the same `group` (PilotCharts.group()) point together, and those of the same
  windows zoom and pan together.
*/
(function () {
  "use strict";

  const DASH = "—";
  const EN_DASH = "–";

  function number(value) {
    return value === null || value === undefined || !Number.isFinite(value)
      ? DASH : String(Number(value.toPrecision(4)));
  }

  function formatters(timeZone, locale) {
    const day = new Intl.DateTimeFormat(locale, {timeZone, day: "numeric", month: "short"});
    const clock = new Intl.DateTimeFormat(locale,
      {timeZone, hour: "2-digit", minute: "2-digit", hourCycle: "h23"});
    const stamp = new Intl.DateTimeFormat(locale, {timeZone, day: "numeric", month: "short",
      hour: "2-digit", minute: "2-digit", hourCycle: "h23"});
    return {day: (s) => day.format(s * 1000), clock: (s) => clock.format(s * 1000),
      stamp: (s) => stamp.format(s * 1000)};
  }

  function group() {
    return {key: `pilot-charts-${Math.random().toString(36).slice(2)}`, charts: new Set(), busy: false};
  }

  // Ctrl + wheel: zoom the time axis around the pointer. Shift + drag or middle drag: pan.
  function explorePlugin(spec) {
    const MIN_SPAN_S = Math.max(4 * (spec.windowS || 60), 60);
    const full = (u) => [u.data[0][0], u.data[0][u.data[0].length - 1]];
    const clamp = (u, min, max) => {
      const [lo, hi] = full(u);
      const span = Math.min(Math.max(max - min, MIN_SPAN_S), hi - lo);
      let from = Math.max(lo, Math.min(min, hi - span));
      return [from, from + span];
    };
    return {
      hooks: {
        ready: (u) => {
          const over = u.over;
          over.addEventListener("wheel", (event) => {
            if (!(event.ctrlKey || event.metaKey) || u.data[0].length < 2) return;
            event.preventDefault();
            const rect = over.getBoundingClientRect();
            const at = u.posToVal(event.clientX - rect.left, "x");
            const {min, max} = u.scales.x;
            const factor = event.deltaY < 0 ? 0.75 : 1 / 0.75;
            const share = (at - min) / (max - min);
            const span = (max - min) * factor;
            const [from, to] = clamp(u, at - share * span, at - share * span + span);
            u.setScale("x", {min: from, max: to});
          }, {passive: false});
          over.addEventListener("mousedown", (event) => {
            if (!(event.shiftKey || event.button === 1) || u.data[0].length < 2) return;
            event.preventDefault();
            const x0 = event.clientX;
            const {min, max} = u.scales.x;
            const perPx = (max - min) / over.clientWidth;
            const move = (e) => {
              const shift = (e.clientX - x0) * perPx;
              const [from, to] = clamp(u, min - shift, max - shift);
              u.setScale("x", {min: from, max: to});
            };
            const up = () => {
              document.removeEventListener("mousemove", move);
              document.removeEventListener("mouseup", up);
            };
            document.addEventListener("mousemove", move);
            document.addEventListener("mouseup", up);
          });
        },
      },
    };
  }

  // Named levels as dashed lines with their labels, and the moment as a dashed vertical line.
  function marksPlugin(spec, fmt) {
    return {
      hooks: {
        draw: (u) => {
          const ctx = u.ctx;
          const {left, top, width, height} = u.bbox;
          const px = window.devicePixelRatio || 1;
          ctx.save();
          ctx.beginPath();
          ctx.rect(left, top, width, height);
          ctx.clip();
          ctx.font = `600 ${11 * px}px system-ui, sans-serif`;
          ctx.textAlign = "right";
          for (const level of spec.levels || []) {
            const y = Math.round(u.valToPos(level.value, "y", true));
            ctx.strokeStyle = ctx.fillStyle = level.colour;
            ctx.lineWidth = 1.5 * px;
            ctx.setLineDash([6 * px, 4 * px]);
            ctx.beginPath();
            ctx.moveTo(left, y);
            ctx.lineTo(left + width, y);
            ctx.stroke();
            ctx.lineWidth = 3 * px;
            ctx.strokeStyle = "#fff";
            ctx.setLineDash([]);
            ctx.strokeText(level.label, left + width - 4 * px, y - 4 * px);
            ctx.fillText(level.label, left + width - 4 * px, y - 4 * px);
          }
          const moment = spec.moment;
          if (moment !== null && moment !== undefined && moment >= u.scales.x.min && moment <= u.scales.x.max) {
            const x = Math.round(u.valToPos(moment, "x", true));
            ctx.strokeStyle = ctx.fillStyle = "#7a0016";
            ctx.lineWidth = 1.5 * px;
            ctx.setLineDash([2 * px, 3 * px]);
            ctx.beginPath();
            ctx.moveTo(x, top);
            ctx.lineTo(x, top + height);
            ctx.stroke();
            ctx.textAlign = x > left + width / 2 ? "right" : "left";
            ctx.fillText(`alarm ${fmt.stamp(moment)}`, x + (x > left + width / 2 ? -4 : 4) * px,
              top + height - 6 * px);
          }
          ctx.restore();
        },
      },
    };
  }

  // Values the y scale must show: the data in view and every level.
  function yRange(spec) {
    return (u, min, max) => {
      const values = (spec.levels || []).map((l) => l.value);
      if (min !== null && Number.isFinite(min)) values.push(min, max);
      if (values.length === 0) return [0, 1];
      const lo = Math.min(...values);
      const hi = Math.max(...values);
      const pad = hi > lo ? (hi - lo) * 0.08 : Math.max(Math.abs(hi) * 0.05, 0.5);
      return [lo - pad, hi + pad];
    };
  }

  // Points of a line to draw when uPlot draws no points: readings with no neighbour, which a
  // line alone would not show.
  function lonePoints(values) {
    const lone = [];
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if (v === null || v === undefined) continue;
      const before = i > 0 ? values[i - 1] : null;
      const after = i + 1 < values.length ? values[i + 1] : null;
      if ((before === null || before === undefined) && (after === null || after === undefined)) lone.push(i);
    }
    return lone;
  }

  function chart(target, spec) {
    const fmt = formatters(spec.timeZone, spec.locale);
    const unit = spec.unit ? ` ${spec.unit}` : "";
    const windowS = spec.windowS || 0;
    const data = [spec.x];
    const series = [{
      label: "Time",
      value: (u, t) => t === null || t === undefined ? DASH
        : windowS ? `${fmt.stamp(t)}${EN_DASH}${fmt.clock(t + windowS)}` : fmt.stamp(t),
    }];
    const bands = [];
    const hidden = [];
    for (const line of spec.lines) {
      const lone = lonePoints(line.values);
      data.push(line.values);
      series.push({
        label: line.label,
        stroke: line.colour,
        width: 1.8,
        spanGaps: false,
        value: (u, v) => v === null || v === undefined ? DASH : `${number(v)}${unit}`,
        points: {size: 5, fill: line.colour, filter: (u, i, show) => show || lone.length === 0 ? null : lone},
      });
      if (line.min && line.max) {
        const mean = series.length - 1;
        data.push(line.max, line.min);
        for (const what of ["max", "min"]) {
          series.push({label: `${line.label} ${what}`, stroke: "transparent", width: 0,
            points: {show: false}, value: (u, v) => v === null || v === undefined ? DASH : `${number(v)}${unit}`});
          hidden.push(series.length - 1);  // a band, not a line: out of the readout
        }
        bands.push({series: [mean + 1, mean + 2], fill: `${line.colour}26`});
      }
    }
    const crowd = spec.group || null;
    let resizing = null;  // the ResizeObserver, disconnected with the chart
    const options = {
      width: Math.max(target.clientWidth || 0, 280),
      height: spec.height || 240,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), spec.timeZone),
      series,
      bands,
      scales: {x: {time: true}, y: {range: yRange(spec)}},
      axes: [
        {
          values: (u, splits, axis, space, incr) => splits.map((s) => {
            if (s === null) return "";
            const midnight = fmt.clock(s) === "00:00";
            return incr >= 86_400 || midnight ? fmt.day(s) : fmt.clock(s);
          }),
          grid: {stroke: "#e3e6ea"},
          ticks: {stroke: "#888"},
        },
        {label: spec.unit || "", labelSize: 18, size: 56, grid: {stroke: "#e3e6ea"}, ticks: {stroke: "#888"}},
      ],
      legend: {live: true},
      cursor: {
        drag: {x: true, y: false},
        // Shift + drag (and the middle button) pan; a plain drag zooms.
        bind: {mousedown: (u, targ, handler) => (e) => {
          if (e.button === 0 && !e.shiftKey) handler(e);
          return null;
        }},
        sync: crowd ? {key: crowd.key} : undefined,
        points: {size: 7},
      },
      plugins: [explorePlugin(spec), marksPlugin(spec, fmt)],
      hooks: {
        destroy: [() => { if (resizing) resizing.disconnect(); }],
        setScale: [(u, key) => {
          if (key !== "x" || !crowd || crowd.busy) return;
          crowd.busy = true;
          try {
            const [first, last] = [u.data[0][0], u.data[0][u.data[0].length - 1]];
            for (const other of crowd.charts) {
              // Only charts of the same windows: the same period, read the same way.
              const same = other.data[0].length > 1 && other.data[0][0] === first &&
                other.data[0][other.data[0].length - 1] === last;
              if (other !== u && same &&
                  (other.scales.x.min !== u.scales.x.min || other.scales.x.max !== u.scales.x.max)) {
                other.setScale("x", {min: u.scales.x.min, max: u.scales.x.max});
              }
            }
          } finally {
            crowd.busy = false;
          }
        }],
      },
    };
    const u = new uPlot(options, data, target);
    const rows = u.root.querySelectorAll(".u-legend .u-series");
    for (const i of hidden) if (rows[i]) rows[i].style.display = "none";
    if (crowd) crowd.charts.add(u);
    if (typeof ResizeObserver === "function") {
      const watch = new ResizeObserver(() => {
        const width = Math.max(target.clientWidth || 0, 280);
        if (Math.abs(width - u.width) > 1) u.setSize({width, height: u.height});
      });
      watch.observe(target);
      resizing = watch;
    }
    return u;
  }

  function destroy(crowd) {
    for (const u of crowd.charts) u.destroy();
    crowd.charts.clear();
  }

  window.PilotCharts = {chart, group, destroy, number};
})();
