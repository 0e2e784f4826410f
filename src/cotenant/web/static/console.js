// cotenant console: CSRF header for htmx requests, and the uPlot charts (no inline script:
// the pages' Content-Security-Policy allows scripts from this server only).
"use strict";

document.addEventListener("htmx:configRequest", function (ev) {
  var meta = document.querySelector('meta[name="csrf-token"]');
  if (meta) { ev.detail.headers["X-CSRF-Token"] = meta.content; }
});

// A poll does not swap the region the keyboard is in: focus would be lost mid-way.
document.addEventListener("htmx:beforeRequest", function (ev) {
  var el = ev.detail.elt, f = document.activeElement;
  var polls = /every/.test(el.getAttribute("hx-trigger") || "");
  if (polls && f && f !== document.body && el.contains(f)) { ev.preventDefault(); }
});

var PALETTE = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#be185d", "#4b5563"];
var charts = [];
var range = "day";

function seriesFor(el, data) {
  var kind = el.dataset.chart;
  var s = data.series, out = [], cols = [];
  if (kind === "alloc") {
    var tenants = Object.keys(s).filter(function (k) { return k.indexOf("alloc:") === 0; })
      .map(function (k) { return k.slice(6); }).sort();
    tenants.forEach(function (t, i) {
      var color = PALETTE[i % PALETTE.length];
      out.push({ label: t + " allocated", stroke: color, width: 2 });
      cols.push(s["alloc:" + t]);
      out.push({ label: t + " entitled", stroke: color, dash: [6, 4], width: 1 });
      cols.push(s["ent:" + t] || []);
    });
    return { series: out, cols: cols, axes: [{ label: "GPUs" }] };
  }
  if (kind === "power") {
    var mw = function (a) { return (a || []).map(function (x) { return x == null ? null : x / 1e6; }); };
    out.push({ label: "facility MW", stroke: PALETTE[0], width: 2 }); cols.push(mw(s.power_w));
    out.push({ label: "cap MW", stroke: PALETTE[1], dash: [6, 4], width: 1 }); cols.push(mw(s.cap_w));
    return { series: out, cols: cols, axes: [{ label: "MW" }] };
  }
  if (kind === "svc") {
    var key = el.dataset.key;
    out.push({ label: "running", stroke: PALETTE[0], width: 2 }); cols.push(s["svc_running:" + key] || []);
    out.push({ label: "needed", stroke: PALETTE[1], dash: [6, 4], width: 1 }); cols.push(s["svc_needed:" + key] || []);
    out.push({ label: "demand req/s", stroke: PALETTE[2], width: 1, scale: "r" }); cols.push(s["svc_demand:" + key] || []);
    return { series: out, cols: cols, axes: [{ label: "replicas" }, { label: "req/s", side: 1, scale: "r" }] };
  }
  out.push({ label: "queued jobs", stroke: PALETTE[0], width: 2, scale: "y" }); cols.push(s.pending || []);
  out.push({ label: "decisions/s", stroke: PALETTE[2], width: 1, scale: "r" }); cols.push(s.dps || []);
  return { series: out, cols: cols, axes: [{ label: "jobs" }, { label: "per s", side: 1, scale: "r" }] };
}

function widthOf(el) { return Math.max(240, Math.floor(el.getBoundingClientRect().width)); }

function draw(el, data) {
  var spec = seriesFor(el, data);
  var axes = [{ space: 80 }].concat(spec.axes.map(function (a) {
    return { label: a.label, side: a.side === 1 ? 1 : 3, scale: a.scale || "y", grid: { show: a.side !== 1 } };
  }));
  var opts = {
    title: el.dataset.title,
    width: widthOf(el),
    height: 220,
    scales: { x: { time: true }, y: { auto: true }, r: { auto: true } },
    series: [{}].concat(spec.series),
    axes: axes,
    legend: { live: false },
    tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); }
  };
  var payload = [data.t].concat(spec.cols.map(function (c) { return c.length ? c : data.t.map(function () { return null; }); }));
  if (el._plot) { el._plot.destroy(); }
  el.innerHTML = "";
  el._plot = new uPlot(opts, payload, el);
}

function refresh() {
  if (!charts.length) { return; }
  fetch("/console/series?range=" + range, { credentials: "same-origin", headers: { "Accept": "application/json" } })
    .then(function (r) {
      if (r.status === 200) { return r.json(); }
      if (r.redirected || r.status === 303) { window.location = "/signin"; }
      return null;
    })
    .then(function (data) { if (data) { charts.forEach(function (el) { draw(el, data); }); } })
    .catch(function () { /* the next poll tries again */ });
}

document.addEventListener("DOMContentLoaded", function () {
  charts = Array.prototype.slice.call(document.querySelectorAll("[data-chart]"));
  document.querySelectorAll("[data-range]").forEach(function (b) {
    b.addEventListener("click", function () {
      range = b.dataset.range;
      document.querySelectorAll("[data-range]").forEach(function (o) {
        o.setAttribute("aria-pressed", o === b ? "true" : "false");
      });
      refresh();
    });
  });
  if (charts.length) {
    refresh();
    setInterval(refresh, 5000);
    var pending = null;
    window.addEventListener("resize", function () {
      clearTimeout(pending);
      pending = setTimeout(function () {
        charts.forEach(function (el) { if (el._plot) { el._plot.setSize({ width: widthOf(el), height: 220 }); } });
      }, 100);
    });
  }
});
