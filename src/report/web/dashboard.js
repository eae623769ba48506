"use strict";
// paipa's live page: draws each snapshot pushed on `events` (server-sent
// events). Read-only; everything is built with DOM calls and textContent.
(function () {
  const base = location.pathname.endsWith("/") ? location.pathname : location.pathname + "/";
  const WINDOW_S = 300; // sparklines show the last five minutes
  const SVG = "http://www.w3.org/2000/svg";
  const history = new Map(); // stage name -> [{t, count}]
  let over = false;
  let drawn = false;
  let events = null;

  const $ = (id) => document.getElementById(id);

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function num(x) {
    if (!isFinite(x)) return "-";
    const a = Math.abs(x);
    if (a >= 1e9) return (x / 1e9).toFixed(1) + " G";
    if (a >= 1e6) return (x / 1e6).toFixed(1) + " M";
    if (a >= 1e4) return (x / 1e3).toFixed(1) + " k";
    return a >= 100 || Number.isInteger(x) ? String(Math.round(x)) : x.toFixed(1);
  }

  function bytes(b) {
    const a = Math.abs(b), sign = b < 0 ? "-" : "+";
    if (a >= 1 << 30) return sign + (a / (1 << 30)).toFixed(1) + " GiB";
    if (a >= 1 << 20) return sign + (a / (1 << 20)).toFixed(1) + " MiB";
    if (a >= 1 << 10) return sign + (a / (1 << 10)).toFixed(1) + " KiB";
    return sign + a + " B";
  }

  function duration(s) {
    if (s < 60) return s.toFixed(1) + " s";
    const m = Math.floor(s / 60);
    if (m < 60) return m + " min " + Math.floor(s % 60) + " s";
    return Math.floor(m / 60) + " h " + (m % 60) + " min";
  }

  // Keeps each stage's count over time; a snapshot older than the last
  // one seen (a new run on the same page) starts the history again.
  function record(snap) {
    for (const s of snap.stages) {
      let h = history.get(s.name);
      if (!h) history.set(s.name, (h = []));
      const last = h[h.length - 1];
      if (last && snap.elapsed_s < last.t) h.length = 0;
      else if (last && snap.elapsed_s === last.t) continue;
      h.push({ t: snap.elapsed_s, count: s.count });
      while (h.length > 2 && snap.elapsed_s - h[0].t > WINDOW_S) h.shift();
    }
  }

  // Items per second between consecutive reports.
  function rates(h) {
    const out = [];
    for (let i = 1; i < h.length; i++) {
      const dt = h[i].t - h[i - 1].t;
      if (dt > 0) out.push({ t: h[i].t, r: (h[i].count - h[i - 1].count) / dt });
    }
    return out;
  }

  function sparkline(points, now) {
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "spark");
    svg.setAttribute("viewBox", "0 0 100 30");
    svg.setAttribute("preserveAspectRatio", "none");
    if (points.length > 0) {
      const max = Math.max(1e-9, ...points.map((p) => p.r));
      const from = Math.max(0, now - WINDOW_S), span = Math.max(1e-9, now - from);
      const line = document.createElementNS(SVG, "polyline");
      const pts = points.length === 1 ? [{ t: from, r: points[0].r }, points[0]] : points;
      line.setAttribute("points", pts.map((p) =>
        (100 * (p.t - from) / span).toFixed(2) + "," + (29 - 28 * p.r / max).toFixed(2)).join(" "));
      svg.appendChild(line);
      const title = document.createElementNS(SVG, "title");
      title.textContent = "peak " + num(max) + " items/s";
      svg.appendChild(title);
    }
    return svg;
  }

  function split(s) {
    const total = s.busy_s + s.starved_s + s.blocked_s;
    const bar = el("div", "split");
    if (total > 0) {
      const parts = [["busy", s.busy_s], ["starved", s.starved_s], ["blocked", s.blocked_s]];
      bar.title = parts.map(([k, v]) => k + " " + Math.round(100 * v / total) + "%").join(", ");
      for (const [k, v] of parts) {
        const part = el("span", k);
        part.style.width = (100 * v / total).toFixed(2) + "%";
        bar.appendChild(part);
      }
    }
    return bar;
  }

  function stageBox(s, snap) {
    const box = el("div", "stage" + (s.name === snap.bottleneck ? " bottleneck" : ""));
    box.dataset.stage = s.name;
    box.appendChild(el("div", "name", s.name)).title = s.name;
    box.appendChild(el("div", "workers", s.in_flight_limit > 0
      ? s.in_flight + " of " + s.in_flight_limit + " in flight"
      : s.workers + (s.workers === 1 ? " worker" : " workers")));
    if (s.latency) {
      const ms = (x) => (1000 * x).toFixed(x < 0.01 ? 2 : 1) + " ms";
      box.appendChild(el("div", "latency", "latency p50 " + ms(s.latency.p50_s) + ", p99 " + ms(s.latency.p99_s)));
    }
    const count = el("div", "count", num(s.count) + " items");
    count.dataset.count = String(s.count);
    box.appendChild(count);
    const r = rates(history.get(s.name) || []);
    const now = r.length ? r[r.length - 1].r : (snap.elapsed_s > 0 ? s.count / snap.elapsed_s : 0);
    box.appendChild(el("div", "rate", num(now) + " items/s"));
    box.appendChild(el("div", "capacity", "capacity " + num(s.throughput_per_s) + "/busy s"));
    box.appendChild(sparkline(r, snap.elapsed_s));
    box.appendChild(split(s));
    if (s.mem_growth_bytes !== 0 || s.mem_peak_bytes !== 0) {
      box.appendChild(el("div", "mem", "memory " + bytes(s.mem_growth_bytes) + " (peak " + bytes(s.mem_peak_bytes) + ")"));
    }
    if (s.failed > 0 || s.skipped > 0 || s.discarded > 0) {
      box.appendChild(el("div", "mem", [s.failed && s.failed + " failed", s.skipped && s.skipped + " skipped",
        s.discarded && s.discarded + " discarded"].filter(Boolean).join(", ")));
    }
    return box;
  }

  function edge(next) {
    const e = el("div", "edge");
    e.appendChild(el("div", "arrow", "\u2192"));
    e.appendChild(el("div", "queue", "queue " + num(next.queue_depth)));
    return e;
  }

  // Touches the DOM only when the status changes: every event would
  // otherwise restyle and repaint the page.
  function setStatus(text, cls) {
    const s = $("status");
    if (s.textContent !== text) s.textContent = text;
    if (s.className !== "status " + cls) s.className = "status " + cls;
  }

  function draw(snap) {
    if (!snap || !Array.isArray(snap.stages)) return;
    drawn = true;
    record(snap);
    $("pipeline-name").textContent = snap.pipeline;
    $("elapsed").textContent = "running for " + duration(snap.elapsed_s);
    const source = snap.stages[0];
    if (snap.expected && source) {
      const done = Math.min(1, source.count / snap.expected);
      const rate = snap.elapsed_s > 0 ? source.count / snap.elapsed_s : 0;
      const eta = rate > 0 && done < 1 ? ", ETA " + duration((snap.expected - source.count) / rate) : "";
      $("progress").textContent = (100 * done).toFixed(1) + "% of " + num(snap.expected) + eta;
    } else {
      $("progress").textContent = "";
    }
    const stages = $("stages");
    stages.replaceChildren();
    snap.stages.forEach((s, i) => {
      if (i > 0) stages.appendChild(edge(s));
      stages.appendChild(stageBox(s, snap));
    });
    const recent = snap.judged_over_s < snap.elapsed_s - 0.5 ? " (last " + Math.round(snap.judged_over_s) + " s)" : "";
    $("verdict").textContent = snap.bottleneck
      ? "bottleneck" + recent + ": " + snap.bottleneck + (snap.hint ? ": " + snap.hint : "")
      : "no bottleneck yet: nothing has run";
    const outcome = $("outcome");
    if (snap.outcome) {
      outcome.hidden = false;
      outcome.className = "outcome " + snap.outcome.kind;
      outcome.dataset.kind = snap.outcome.kind;
      outcome.textContent = snap.outcome.line;
    } else if (snap.final) {
      outcome.hidden = false;
      outcome.className = "outcome finished";
      outcome.textContent = "run over";
    } else {
      outcome.hidden = true;
    }
    if (snap.final) {
      over = true;
      setStatus("run over", "over");
      if (events) events.close();
    }
  }

  // At most one drawing a second: a run reporting every 100 ms would
  // otherwise have every open page redraw ten times a second, on the
  // viewer's CPU (often the machine the pipeline runs on). The newest
  // snapshot is the one drawn; the final one is drawn at once.
  const MIN_DRAW_MS = 1000;
  let pending = null, lastDraw = 0, timer = null;
  function flush() {
    if (timer) { clearTimeout(timer); timer = null; }
    const snap = pending;
    pending = null;
    if (!snap) return;
    lastDraw = Date.now();
    try { draw(snap); } catch (e) { console.error("paipa dashboard: cannot draw a snapshot: " + e); }
  }
  function show(snap) {
    pending = snap;
    const wait = lastDraw + MIN_DRAW_MS - Date.now();
    if ((snap && snap.final) || wait <= 0) flush();
    else if (!timer) timer = setTimeout(flush, wait);
  }

  function connect() {
    events = new EventSource(base + "events");
    events.onopen = () => { if (!over) setStatus("live", "live"); };
    events.onmessage = (m) => {
      if (!over) setStatus("live", "live");
      let snap = null;
      try { snap = JSON.parse(m.data); } catch (e) { return; /* a malformed event: wait for the next */ }
      show(snap);
    };
    events.onerror = () => {
      if (over) return;
      setStatus("connection lost, reconnecting", "lost");
      // EventSource retries by itself unless the server refused it outright.
      if (events.readyState === EventSource.CLOSED) setTimeout(connect, 2000);
    };
  }

  fetch(base + "snapshot", { cache: "no-store" })
    .then((r) => r.json())
    .then((snap) => { if (!drawn && snap) show(snap); })
    .catch(() => {});
  connect();
})();
