// xrdmtl run page: timeline, refined cells, pattern with hkl ticks, last files. No library, no network
// beyond this page's own server (live) or the data embedded in the page (static).
"use strict";
(function () {
  const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"];
  const PAD = { left: 46, right: 12, top: 10, bottom: 28 };
  const RECENT = 15;
  const state = { meta: null, rows: [], selected: null, follow: true, live: false, pending: false };
  const $ = (id) => document.getElementById(id);

  function canvas2d(c) {
    const dpr = window.devicePixelRatio || 1;
    const w = c.clientWidth, h = c.clientHeight;
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
      c.width = Math.round(w * dpr); c.height = Math.round(h * dpr);
    }
    const ctx = c.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    ctx.font = "11px system-ui, sans-serif";
    return { ctx, w, h };
  }

  function scale(d0, d1, r0, r1) {
    const k = d1 > d0 ? (r1 - r0) / (d1 - d0) : 0;
    return (v) => r0 + (v - d0) * k;
  }

  function niceTicks(lo, hi, n) {
    const span = hi - lo || 1, step0 = span / n;
    const mag = Math.pow(10, Math.floor(Math.log10(step0)));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => span / s <= n) || mag * 10;
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) out.push(+v.toFixed(10));
    return out;
  }

  function axes(ctx, w, h, xs, ys, xt, yt, xlabel, ylabel, fmtY) {
    ctx.strokeStyle = "#ccc"; ctx.fillStyle = "#555"; ctx.lineWidth = 1;
    ctx.beginPath();
    for (const v of yt) { ctx.moveTo(PAD.left, ys(v)); ctx.lineTo(w - PAD.right, ys(v)); }
    ctx.stroke();
    ctx.textAlign = "right"; ctx.textBaseline = "middle";
    for (const v of yt) ctx.fillText(fmtY ? fmtY(v) : String(v), PAD.left - 4, ys(v));
    ctx.textAlign = "center"; ctx.textBaseline = "top";
    for (const v of xt) ctx.fillText(String(v), xs(v), h - PAD.bottom + 4);
    ctx.fillText(xlabel, (PAD.left + w - PAD.right) / 2, h - 13);
    ctx.save(); ctx.translate(10, (PAD.top + h - PAD.bottom) / 2); ctx.rotate(-Math.PI / 2);
    ctx.fillText(ylabel, 0, -6); ctx.restore();
  }

  function timelineScales() {
    const c = $("timeline"), n = state.rows.length;
    const w = c.clientWidth, h = c.clientHeight;
    return {
      xs: scale(0, Math.max(n - 1, 1), PAD.left + 4, w - PAD.right - 4),
      ys: scale(0, 1, h - PAD.bottom, PAD.top),
    };
  }

  function drawTimeline() {
    const { ctx, w, h } = canvas2d($("timeline"));
    const n = state.rows.length, meta = state.meta;
    const { xs, ys } = timelineScales();
    axes(ctx, w, h, xs, ys, n ? niceTicks(0, Math.max(n - 1, 1), 10).filter((v) => Number.isInteger(v)) : [],
      [0, 0.25, 0.5, 0.75, 1], "frame", "probability");
    meta.phases.forEach((_, t) => {
      ctx.strokeStyle = COLORS[t % COLORS.length];
      if (meta.thresholds) {
        ctx.setLineDash([4, 4]); ctx.lineWidth = 0.8; ctx.beginPath();
        ctx.moveTo(PAD.left, ys(meta.thresholds[t])); ctx.lineTo(w - PAD.right, ys(meta.thresholds[t])); ctx.stroke();
      }
      ctx.setLineDash([]); ctx.lineWidth = 1.6; ctx.beginPath();
      let on = false;
      for (const r of state.rows) {
        const p = r.p[t];
        if (p === null) { on = false; continue; }
        if (on) ctx.lineTo(xs(r.i), ys(p)); else ctx.moveTo(xs(r.i), ys(p));
        on = true;
      }
      ctx.stroke();
      if (n <= 300) {
        ctx.fillStyle = COLORS[t % COLORS.length];
        for (const r of state.rows) if (r.p[t] !== null) { ctx.beginPath(); ctx.arc(xs(r.i), ys(r.p[t]), 2.2, 0, 7); ctx.fill(); }
      }
    });
    ctx.fillStyle = "#c00";  // failed files: a red mark on the axis
    for (const r of state.rows) if (r.error) ctx.fillRect(xs(r.i) - 1.5, h - PAD.bottom - 8, 3, 8);
    if (state.selected !== null && state.selected < n) {
      ctx.strokeStyle = "#333"; ctx.lineWidth = 1; ctx.setLineDash([2, 3]);
      ctx.beginPath(); ctx.moveTo(xs(state.selected), PAD.top); ctx.lineTo(xs(state.selected), h - PAD.bottom); ctx.stroke();
      ctx.setLineDash([]);
    }
  }

  function drawCells() {
    const cols = state.meta.cells || [];
    const box = $("cells"), present = cols.filter((c) => state.rows.some((r) => r.cells[c] != null));
    $("cells-section").hidden = present.length === 0;
    for (const c of present) {
      let cv = document.getElementById("cell-" + c);
      if (!cv) {
        const label = document.createElement("div"); label.textContent = c + " (Å)"; label.className = "info";
        cv = document.createElement("canvas"); cv.id = "cell-" + c; cv.className = "plot small";
        box.append(label, cv);
      }
      const vals = state.rows.filter((r) => r.cells[c] != null);
      const lo = Math.min(...vals.map((r) => r.cells[c])), hi = Math.max(...vals.map((r) => r.cells[c]));
      const pad = (hi - lo) * 0.1 || Math.abs(hi) * 1e-4 || 1e-3;
      const { ctx, w, h } = canvas2d(cv);
      const xs = scale(0, Math.max(state.rows.length - 1, 1), PAD.left + 4, w - PAD.right - 4);
      const ys = scale(lo - pad, hi + pad, h - PAD.bottom, PAD.top);
      axes(ctx, w, h, xs, ys, niceTicks(0, Math.max(state.rows.length - 1, 1), 10).filter(Number.isInteger),
        niceTicks(lo - pad, hi + pad, 4), "frame", "", (v) => v.toFixed(3));
      const t = state.meta.phases.findIndex((p) => c.startsWith(p + "_"));
      ctx.fillStyle = COLORS[Math.max(t, 0) % COLORS.length];
      for (const r of vals) { ctx.beginPath(); ctx.arc(xs(r.i), ys(r.cells[c]), 2.2, 0, 7); ctx.fill(); }
    }
  }

  function drawPattern(view) {
    const { ctx, w, h } = canvas2d($("pattern"));
    if (!view || !view.q || !view.q.length) {
      ctx.fillStyle = "#777"; ctx.textAlign = "center";
      ctx.fillText(view && view.read_error ? view.read_error : (state.live ? "no pattern yet" : "the pattern is shown by xrdmtl watch --serve"), w / 2, h / 2);
      return;
    }
    const called = view.calls || [];
    const ticksH = 12 * Math.max(called.length, 1);
    const q0 = view.q[0], q1 = view.q[view.q.length - 1];
    const xs = scale(q0, q1, PAD.left, w - PAD.right);
    const ys = scale(0, 1.05, h - PAD.bottom - ticksH, PAD.top);
    axes(ctx, w, h, xs, ys, niceTicks(q0, q1, 10), [0, 0.5, 1], "Q (Å⁻¹)", "intensity", (v) => v.toFixed(1));
    ctx.strokeStyle = "#222"; ctx.lineWidth = 1; ctx.beginPath();
    view.q.forEach((q, k) => (k ? ctx.lineTo(xs(q), ys(view.y[k])) : ctx.moveTo(xs(q), ys(view.y[k]))));
    ctx.stroke();
    called.forEach((name, row) => {
      const t = state.meta.phases.indexOf(name), col = COLORS[t % COLORS.length];
      const base = h - PAD.bottom - ticksH + 12 * row + 11;
      ctx.strokeStyle = col; ctx.fillStyle = col; ctx.lineWidth = 1.2; ctx.textAlign = "center"; ctx.textBaseline = "bottom";
      const ticks = (view.ticks[name] || []).filter((tk) => tk[0] >= q0 && tk[0] <= q1);
      for (const [q, inten] of ticks) {
        ctx.beginPath(); ctx.moveTo(xs(q), base); ctx.lineTo(xs(q), base - 2 - 7 * inten / 100); ctx.stroke();
      }
      ctx.globalAlpha = 0.8;  // hkl of the strongest few, on the pattern, none over another
      const placed = [];
      for (const [q, , hkl] of ticks.slice(0, 10)) {
        const x = xs(q), half = ctx.measureText(hkl).width / 2 + 4;
        if (placed.some(([a, b]) => x + half > a && x - half < b)) continue;
        placed.push([x - half, x + half]);
        ctx.fillText(hkl, x, PAD.top + 10 + 11 * row);
      }
      ctx.globalAlpha = 1;
    });
  }

  function esc(s) { return String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]); }

  function showInfo(r) {
    const probs = state.meta.phases.map((p, t) => r.p[t] === null ? "" : `${esc(p)} ${r.p[t].toFixed(2)}`).filter(Boolean).join(", ");
    const parts = [`#${r.i}`, probs, r.calls.length ? "called: " + esc(r.calls.join(", ")) : (r.error ? "" : "nothing called")];
    if (r.warning) parts.push(`<span class="warn">${esc(r.warning)}</span>`);
    if (r.error) parts.push(`<span class="err">${esc(r.error)}</span>`);
    $("pattern-info").innerHTML = parts.filter(Boolean).join(" · ");
    $("pattern-title").textContent = r.file;
  }

  async function showPattern(i) {
    const r = state.rows[i];
    if (!r) return;
    state.selected = i; showInfo(r); schedule(); renderTable();
    if (!state.live) { drawPattern(null); return; }
    try {
      const res = await fetch("api/pattern/" + i);
      const view = await res.json();
      if (state.selected === i) { drawPattern(view); document.body.dataset.shown = String(i); }
    } catch (e) { drawPattern({ read_error: "cannot load the pattern: " + e }); }
  }

  function renderTable() {
    const body = $("recent").tBodies[0];
    body.innerHTML = "";
    for (const r of state.rows.slice(-RECENT).reverse()) {
      const tr = document.createElement("tr");
      tr.className = (r.error ? "error" : r.warning ? "warn" : "") + (r.i === state.selected ? " selected" : "");
      tr.innerHTML = `<td>${r.i}</td><td class="file" title="${esc(r.file)}">${esc(r.file.split("/").pop())}</td>` +
        `<td>${esc(r.calls.join(", "))}</td><td>${esc(r.error || r.warning)}</td>`;
      tr.onclick = () => { state.follow = r.i === state.rows.length - 1; showPattern(r.i); };
      body.append(tr);
    }
  }

  function schedule() {
    if (state.pending) return;
    state.pending = true;
    requestAnimationFrame(() => { state.pending = false; if (state.meta) { drawTimeline(); drawCells(); } });
  }

  function setMeta(meta) {
    state.meta = meta; state.rows = []; state.selected = null;
    $("title").textContent = meta.title || "";
    document.title = "xrdmtl · " + (meta.title || "run");
    $("legend").innerHTML = meta.phases.map((p, t) => `<span><i style="background:${COLORS[t % COLORS.length]}"></i>${esc(p)}</span>`).join("");
    $("cells").innerHTML = "";
  }

  function addRows(rows) {
    state.rows.push(...rows);
    document.body.dataset.frames = String(state.rows.length);
    const failed = state.rows.filter((r) => r.error).length;
    const last = state.rows[state.rows.length - 1];
    $("status").textContent = `${state.live ? "live" : "finished run"} · ${state.rows.length} files, ${failed} failed` +
      (last ? ` · last: ${last.file.split("/").pop()}` : "");
    renderTable(); schedule();
    if (state.follow && rows.length) showPattern(state.rows.length - 1);
  }

  $("timeline").addEventListener("click", (ev) => {
    const n = state.rows.length;
    if (!n) return;
    const rect = ev.currentTarget.getBoundingClientRect();
    const { xs } = timelineScales();
    let best = 0;
    for (let i = 1; i < n; i++) if (Math.abs(xs(i) - (ev.clientX - rect.left)) < Math.abs(xs(best) - (ev.clientX - rect.left))) best = i;
    state.follow = best === n - 1;
    showPattern(best);
  });
  window.addEventListener("resize", () => { schedule(); if (state.selected !== null) showPattern(state.selected); });

  const embedded = JSON.parse($("xrdmtl-data").textContent);
  if (embedded) {
    setMeta(embedded.meta); $("status").className = "status"; addRows(embedded.rows);
  } else {
    state.live = true;
    const source = new EventSource("events");
    source.addEventListener("meta", (e) => { setMeta(JSON.parse(e.data)); $("status").className = "status live"; });
    source.addEventListener("rows", (e) => addRows(JSON.parse(e.data)));
    source.onerror = () => { $("status").className = "status lost"; $("status").textContent = "disconnected: retrying…"; };
    source.onopen = () => { $("status").className = "status live"; };
  }
  // for tests and scripts: the page's state and where frame i sits on the timeline (CSS pixels)
  window.xrdmtl = { state, showPattern, timelineX: (i) => timelineScales().xs(i) };
})();
