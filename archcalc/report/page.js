/* archcalc HTML report: draws the page from the JSON embedded in it (#archcalc-data).
 * data.json is exactly what `archcalc analyze|diff --format json` prints; data.page holds
 * what drawing needs besides (folded rows per depth, the laid-out graph, explain texts,
 * live bytes over time). Numbers are shown as given; this script only formats them.
 * Written for archcalc; no library, no request. */
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("archcalc-data").textContent);
  const { exact, count, bytes, seconds, el, svg } = archcalcUi;  // ui.js
  const doc = data.json, page = data.page, isDiff = page.kind === "diff";
  // Row fields, as html.py lists them.
  const NAME = 0, OP = 1, SHAPE = 2, PARAMS = 3, MACS = 4, FLOPS = 5, ACT = 6, FIELD = 7, MODELLED = 8, LAYERS = 9;
  const METRICS = { macs: [MACS, "MACs", count], params: [PARAMS, "Params", count], activations: [ACT, "Activations", bytes] };
  const state = { level: page.first_level, open: null, metric: "macs", selected: -1, sortKey: null, sortAsc: false, filter: "" };

  function signed(text, n) { return (n > 0 ? "+" : "") + text; }
  function base() { return page.levels[state.level]; }
  // The view shown: the chosen level, or that level with one block opened ("Open this block").
  function level() { const lv = base(); return state.open !== null && lv.open && lv.open[state.open] ? lv.open[state.open] : lv; }
  // Light to dark orange by share of the largest row; sqrt so that small layers still show.
  function heat(share) {
    const t = Math.sqrt(Math.max(0, Math.min(1, share)));
    const a = [255, 247, 237], b = [194, 65, 12];
    return "rgb(" + a.map((v, i) => Math.round(v + (b[i] - v) * t)).join(",") + ")";
  }

  const body = document.body;
  const header = el("header");
  const main = el("main");

  // --- header and totals ----------------------------------------------------------------------
  function card(label, big, exactText, key, detail, cls) {
    const c = el("div", { class: "card" + (cls ? " " + cls : "") }, el("div", { class: "label", text: label }),
      el("div", { class: "big", text: big }));
    const e = el("div", { class: "exact", text: exactText });
    if (key) e.setAttribute("data-total", key);
    c.append(e);
    if (detail) c.append(el("div", { class: "detail" }, detail));
    return c;
  }
  function bindingsText(b) {
    const keys = Object.keys(b || {}).sort();
    return keys.length ? keys.map((k) => k + "=" + b[k]).join(", ") : "no symbolic dims";
  }
  function analysisHeader() {
    const t = doc.totals;
    header.append(el("h1", { text: "archcalc report: " + (doc.model || doc.path) }),
      el("div", { class: "sub", text: doc.path + " · counted with " + bindingsText(doc.bindings) + " · " +
        exact(page.levels[page.levels.length - 1].rows.length) + " layers · archcalc " + page.version }));
    const partial = t.partial ? " (partial)" : "";
    const totals = el("section", { id: "totals" }, el("h2", { text: "Totals" }));
    const cards = el("div", { class: "cards" },
      card("Params", count(t.params), exact(t.params), "params",
        el("span", {}, "frozen ", el("span", { "data-total": "frozen_params", text: exact(t.frozen_params) }),
          " · buffers ", el("span", { "data-total": "buffers", text: exact(t.buffers) }))),
      card("Trainable params", count(t.trainable_params), exact(t.trainable_params), "trainable_params"),
      card("Non-trainable params", count(t.non_trainable_params), exact(t.non_trainable_params), "non_trainable_params",
        "frozen + buffers"),
      card("MACs" + partial, count(t.macs), exact(t.macs), "macs",
        el("span", {}, "integer ", el("span", { "data-total": "integer_macs", text: exact(t.integer_macs || 0) }),
          " · float " + exact(t.macs - (t.integer_macs || 0)))),
      card("FLOPs" + partial, count(t.flops), exact(t.flops), "flops"),
      card("Weight memory", bytes(t.weight_bytes), exact(t.weight_bytes) + " B", "weight_bytes",
        el("span", {}, "scales, zero points ",
          el("span", { "data-total": "quantization_bytes", text: exact(t.quantization_bytes || 0) }), " B")),
      card("Activation memory", bytes(t.activation_bytes), exact(t.activation_bytes) + " B", "activation_bytes",
        "all layers' outputs"),
      card("Peak activation memory", bytes(t.peak_activation_bytes), exact(t.peak_activation_bytes) + " B",
        "peak_activation_bytes", "inference, each tensor freed after last use", "peak"),
      card("Input memory", bytes(t.input_bytes), exact(t.input_bytes) + " B", "input_bytes"));
    totals.append(cards);
    if (t.partial) totals.append(el("p", { class: "partial", text: "Totals are partial: some ops have no rule and are not counted (see warnings)." }));
    if (doc.warnings && doc.warnings.length) {
      const list = el("ul");
      for (const w of doc.warnings) list.append(el("li", { text: w }));
      totals.append(el("div", { class: "warnings", id: "warnings" }, el("b", { text: doc.warnings.length + " warning(s)" }), list));
    }
    main.append(totals);
  }
  function diffHeader() {
    const [oldLabel, newLabel] = page.labels;
    header.append(el("h1", { text: "archcalc diff: " + oldLabel + " → " + newLabel }),
      el("div", { class: "sub", text: doc.old.path + " → " + doc.new.path + " · counted with " +
        bindingsText(doc.new.bindings) + (doc.depth ? " · rows at depth " + doc.depth : "") + " · archcalc " + page.version }));
    const names = { params: "Params", trainable_params: "Trainable params", non_trainable_params: "Non-trainable params",
      buffers: "Buffers", macs: "MACs", flops: "FLOPs", weight_bytes: "Weight memory",
      activation_bytes: "Activation memory (all outputs)", peak_activation_bytes: "Peak activation memory" };
    const table = el("table", { id: "difftotals" });
    table.append(el("tr", {}, el("th", { text: "Total" }), el("th", { class: "num", text: oldLabel }),
      el("th", { class: "num", text: newLabel }), el("th", { class: "num", text: "Δ" }), el("th", { class: "num", text: "Δ %" }),
      el("th", { text: "" })));
    let widest = 0;
    for (const d of Object.values(doc.totals)) widest = Math.max(widest, Math.abs(d.percent || 0));
    for (const [key, d] of Object.entries(doc.totals)) {
      const fmt = key.endsWith("bytes") ? bytes : exact;
      const bar = el("span", { class: "deltabar" });
      bar.style.width = (widest ? Math.abs(d.percent || 0) / widest * 160 : 0) + "px";
      bar.style.background = d.delta > 0 ? "#dc2626" : "#16a34a";
      const cells = [el("td", { text: names[key] || key }), el("td", { class: "num", "data-old": key, text: fmt(d.old) }),
        el("td", { class: "num", "data-new": key, text: fmt(d.new) }),
        el("td", { class: "num " + (d.delta > 0 ? "pos" : d.delta < 0 ? "neg" : ""), "data-delta": key, text: signed(fmt(d.delta), d.delta) }),
        el("td", { class: "num", text: d.percent == null ? "new" : signed(d.percent.toFixed(1) + "%", d.percent) }), el("td", {}, bar)];
      table.append(el("tr", {}, ...cells));
    }
    const c = doc.counts;
    const section = el("section", { id: "totals" }, el("h2", { text: "Totals, side by side" }), table,
      el("p", { id: "counts", text: ["changed", "added", "removed", "renamed", "unchanged"].map((s) => c[s] + " " + s).join(", ") +
        (doc.depth ? " (rows at depth " + doc.depth + ")" : " (layers)") }));
    if (doc.old.partial || doc.new.partial) section.append(el("p", { class: "partial", text: "MACs and FLOPs are partial on a side with ops that have no rule." }));
    main.append(section);
  }

  // --- controls ---------------------------------------------------------------------------------
  const levelSelect = el("select", { id: "level", onchange: (e) => { state.level = +e.target.value; state.open = null; state.selected = -1; redraw(); } });
  page.levels.forEach((lv, i) => levelSelect.append(el("option", { value: i, text: lv.label + " (" + exact(lv.rows.length) + " rows)" })));
  levelSelect.value = state.level;
  const metricButtons = el("span", { class: "seg", id: "metric" });
  for (const key of Object.keys(METRICS)) {
    metricButtons.append(el("button", { "data-metric": key, text: METRICS[key][1], onclick: () => { state.metric = key; redraw(); } }));
  }
  const controls = el("div", { class: "controls" }, el("label", { text: "View " }), levelSelect,
    el("label", { text: "Colour and bars by " }), metricButtons,
    el("span", { class: "muted", text: "Click a box, bar or row for its formulas." }));

  // --- where the cost is ------------------------------------------------------------------------
  const barsBox = el("div", { class: "bars" });
  const topBox = el("div");
  const opsBox = el("div");
  function drawBars() {
    barsBox.replaceChildren(el("h3", { text: "Per row, in execution order (" + level().label + ")" }));
    const rows = level().rows, n = rows.length;
    for (const key of ["params", "macs", "activations"]) {
      const [index, label, fmt] = METRICS[key];
      let max = 0, total = 0;
      for (const r of rows) { max = Math.max(max, r[index]); total += r[index]; }
      const w = 1000, h = 90;
      const chart = svg("svg", { viewBox: "0 0 " + w + " " + h, preserveAspectRatio: "none", "data-chart": key });
      let path = "";
      const step = w / Math.max(n, 1);
      for (let i = 0; i < n; i++) {
        const v = max ? rows[i][index] / max * (h - 4) : 0;
        if (v > 0) path += "M" + (i * step + step / 2).toFixed(2) + " " + h + "V" + (h - v).toFixed(2);
      }
      chart.append(svg("path", { d: path, stroke: key === state.metric ? "#c2410c" : "#64748b",
        "stroke-width": Math.max(1, step * 0.8), fill: "none", "vector-effect": "non-scaling-stroke" }));
      if (state.selected >= 0 && state.selected < n) {
        chart.append(svg("rect", { x: state.selected * step, y: 0, width: Math.max(step, 1), height: h, fill: "rgba(29,35,48,.15)" }));
      }
      const at = (e) => { const box = chart.getBoundingClientRect(); return Math.max(0, Math.min(n - 1, Math.floor((e.clientX - box.left) / box.width * n))); };
      const tip = svg("title");
      chart.append(tip);
      chart.addEventListener("mousemove", (e) => { const r = rows[at(e)]; tip.textContent = r[NAME] + ": " + fmt(r[index]); });
      chart.addEventListener("click", (e) => select(at(e), true));
      const title = el("div", { class: "title", text: label + ": largest " + fmt(max) + ", total " + fmt(total) });
      barsBox.append(el("div", { class: "chart" }, title, chart));
    }
  }
  function drawTop() {
    const rows = page.levels[page.levels.length - 1].rows;
    topBox.replaceChildren();
    for (const [index, label] of [[MACS, "MACs"], [PARAMS, "params"]]) {
      const order = rows.map((r, i) => i).filter((i) => rows[i][index] > 0).sort((a, b) => rows[b][index] - rows[a][index]).slice(0, 10);
      const table = el("table", { id: "top-" + label.toLowerCase() });
      table.append(el("tr", {}, el("th", { text: "Top 10 layers by " + label }), el("th", { text: "Op" }), el("th", { class: "num", text: label })));
      for (const i of order) {
        table.append(el("tr", { class: "clickable", onclick: () => showLayer(rows[i][NAME]) }, el("td", { class: "name", text: rows[i][NAME], title: rows[i][NAME] }),
          el("td", { text: rows[i][OP] }), el("td", { class: "num", text: count(rows[i][index]) })));
      }
      topBox.append(table, el("div", { style: "height:10px" }));
    }
  }
  function drawOps() {
    const ops = page.ops; // [op, rows, params, macs, flops, activation bytes], largest MACs first
    let params = 0, macs = 0, act = 0;
    for (const o of ops) { params += o[2]; macs += o[3]; act += o[5]; }
    const table = el("table", { id: "ops" });
    table.append(el("tr", {}, el("th", { text: "Share by op type" }), el("th", { class: "num", text: "Layers" }),
      el("th", { text: "MACs" }), el("th", { class: "num", text: "Params" }), el("th", { class: "num", text: "Activ." })));
    const pct = (v, t) => (t ? (v / t * 100) : 0);
    for (const o of ops.slice(0, 25)) {
      const share = pct(o[3], macs);
      const bar = el("span", { class: "share" });
      bar.style.width = Math.max(share, 0.5) * 0.8 + "px";
      table.append(el("tr", {}, el("td", { text: o[0] }), el("td", { class: "num", text: exact(o[1]) }),
        el("td", {}, bar, document.createTextNode(share.toFixed(1) + "%")),
        el("td", { class: "num", text: pct(o[2], params).toFixed(1) + "%" }), el("td", { class: "num", text: pct(o[5], act).toFixed(1) + "%" })));
    }
    if (ops.length > 25) table.append(el("tr", {}, el("td", { class: "muted", text: "… " + (ops.length - 25) + " more op types" })));
    opsBox.replaceChildren(el("div", { style: "overflow-x: auto" }, table));
  }

  // --- the graph --------------------------------------------------------------------------------
  const graphBox = el("div", { id: "graph" });
  const details = el("div", { id: "details" }, el("p", { class: "hint", text: "Click a box in the graph, a bar or a table row: its formulas with the numbers, shapes in and out, params, MACs and receptive field show here." }));
  const legend = el("div", { class: "legend" });
  let nodeElements = [];
  const NODE_W = 200, NODE_H = 40;
  const STATUS_FILL = { added: "#bbf7d0", changed: "#fde68a", renamed: "#a5f3fc", unchanged: "#ffffff" };
  function drawGraph() {
    const lv = level();
    nodeElements = [];
    graphBox.replaceChildren();
    const [index, label, fmt] = METRICS[state.metric];
    legend.replaceChildren();
    if (!isDiff) {
      legend.append(el("span", { text: "Fill: share of the largest " + label + " in this view" }),
        (() => { const r = el("span", { class: "ramp" }); r.style.background = "linear-gradient(90deg," + heat(0) + "," + heat(0.25) + "," + heat(1) + ")"; return r; })());
    }
    legend.append(el("span", { text: "edges: tensor shapes (dashed: shape arithmetic)" }));
    if (state.open !== null) {
      legend.append(el("button", { id: "fold-block", text: "Fold " + base().rows[+state.open][NAME] + " again",
        onclick: () => { state.open = null; state.selected = -1; redraw(); } }));
    }
    if (isDiff) {
      for (const [s, c] of [["added", "--added"], ["changed", "--changed"], ["renamed", "--renamed"], ["unchanged", "--line"]]) {
        const sw = el("span", { class: "swatch" }); sw.style.borderColor = "var(" + c + ")"; sw.style.background = STATUS_FILL[s];
        legend.append(el("span", {}, sw, document.createTextNode(s)));
      }
      if (page.removed.length) legend.append(el("span", { id: "removed", text: "removed: " + page.removed.join(", ") }));
    }
    if (lv.note) graphBox.append(el("p", { class: "note", id: "graph-note", text: lv.note }));
    if (!lv.x) return;
    const rows = lv.rows;
    let max = 0;
    for (const r of rows) max = Math.max(max, r[index]);
    const root = svg("svg", { width: lv.width, height: lv.height, viewBox: "0 0 " + lv.width + " " + lv.height, id: "graph-svg" });
    root.append((() => {
      const defs = svg("defs");
      const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
      marker.append(svg("path", { d: "M0 0L10 5L0 10z", fill: "#9aa4b2" }));
      defs.append(marker);
      return defs;
    })());
    const labels = lv.edges.length <= 600;
    const edgeLayer = svg("g"), nodeLayer = svg("g"), labelled = new Set();
    for (const [s, t, shape, pts, thin] of lv.edges) {
      let d = "M" + pts[0] + " " + pts[1];
      for (let i = 2; i < pts.length; i += 2) {
        const px = pts[i - 2], py = pts[i - 1], x = pts[i], y = pts[i + 1];
        const my = (py + y) / 2;
        d += "C" + px + " " + my + " " + x + " " + my + " " + x + " " + y;
      }
      const path = svg("path", { class: thin ? "edge thin" : "edge", d: d, "marker-end": "url(#arrow)", "data-from": s, "data-to": t });
      const title = svg("title"); title.textContent = shape; path.append(title);
      edgeLayer.append(path);
      if (labels && !thin && !labelled.has(s + "|" + shape)) {  // one label per tensor leaving a box
        labelled.add(s + "|" + shape);
        const text = svg("text", { class: "elabel", x: pts[0] + 4, y: pts[1] + 14 });
        text.textContent = shape;
        edgeLayer.append(text);
      }
    }
    const total = rows.length + (lv.inputs ? lv.inputs.length : 0);
    for (let i = 0; i < total; i++) {
      const x = lv.x[i] - NODE_W / 2, y = lv.y[i];
      const isInput = i >= rows.length;
      const g = svg("g", { class: "node " + (isInput ? "input" : "layer"), transform: "translate(" + x + "," + y + ")", "data-row": i });
      const rect = svg("rect", { width: NODE_W, height: NODE_H, rx: 6 });
      let name, sub;
      if (isInput) {
        const [n, shape] = lv.inputs[i - rows.length];
        name = n; sub = "input " + shape;
      } else {
        const r = rows[i];
        // A diff colours by change (the legend says which), a model by its share of the metric.
        const share = lv.status ? 0 : max ? r[index] / max : 0;
        rect.setAttribute("fill", lv.status ? STATUS_FILL[lv.status[i]] : heat(share));
        name = r[NAME];
        sub = (r[LAYERS] > 1 ? r[LAYERS] + " layers · " : r[OP] + " · ") + (r[MODELLED] ? fmt(r[index]) : "? (no rule)");
        if (lv.status && lv.status[i] !== "unchanged") { g.classList.add("st-" + lv.status[i]); sub = lv.status[i] + " · " + sub; }
        g.addEventListener("click", () => select(i, false));
        if (share > 0.55) g.setAttribute("data-dark", "1");
      }
      g.setAttribute("data-name", name);
      const title = svg("title"); title.textContent = name + "\n" + sub;
      const t1 = svg("text", { x: 8, y: 16 }); t1.textContent = name.length > 30 ? name.slice(0, 13) + "…" + name.slice(-16) : name;
      const t2 = svg("text", { x: 8, y: 32, class: "op" }); t2.textContent = sub.length > 34 ? sub.slice(0, 33) + "…" : sub;
      if (g.getAttribute("data-dark")) { t1.setAttribute("fill", "#fff"); t2.setAttribute("fill", "#fff"); }
      g.append(title, rect, t1, t2);
      nodeLayer.append(g);
      nodeElements.push(g);
    }
    root.append(edgeLayer, nodeLayer);
    graphBox.append(root);
    if (state.selected >= 0) nodeElements[state.selected].classList.add("selected");
  }

  // --- details ------------------------------------------------------------------------------------
  function showLayer(name) {
    const lines = page.explain[name];
    details.replaceChildren(el("h3", { text: name }), el("pre", { id: "explain", text: lines ? lines.join("\n") : "(no explanation)" }));
  }
  function select(i, scroll) {
    const lv = level();
    if (i < 0 || i >= lv.rows.length) return;
    if (state.selected >= 0 && nodeElements[state.selected]) nodeElements[state.selected].classList.remove("selected");
    state.selected = i;
    if (nodeElements[i]) {
      nodeElements[i].classList.add("selected");
      if (scroll) {
        const x = lv.x[i], y = lv.y[i];
        graphBox.scrollTo({ left: x - graphBox.clientWidth / 2, top: y - graphBox.clientHeight / 2 });
      }
    }
    drawBars();
    const r = lv.rows[i];
    const members = lv.members ? lv.members[i] : [r[NAME]];
    if (members.length === 1) { showLayer(members[0]); return; }
    const summary = r[NAME] + " (" + r[OP] + ")\n  output " + r[SHAPE] + "\n  params " + exact(r[PARAMS]) + ", MACs " +
      (r[MODELLED] ? exact(r[MACS]) : "?") + ", FLOPs " + exact(r[FLOPS]) + ", activations " + bytes(r[ACT]) + "\n  receptive field " + r[FIELD];
    const list = el("ul");
    for (const m of members.slice(0, 300)) list.append(el("li", {}, el("a", { text: m, onclick: () => showLayer(m) })));
    if (members.length > 300) list.append(el("li", { text: "… " + (members.length - 300) + " more" }));
    const openable = state.open === null && base().open && base().open[i];
    const deeper = openable ? el("button", { id: "open-block", text: "Open this block", onclick: () => openHere(i, members[0]) })
      : state.level + 1 < page.levels.length ? el("button", { id: "next-level", text: "Show the next level", onclick: () => openBlock(members[0]) }) : null;
    details.replaceChildren(el("h3", { text: r[NAME] }), el("pre", { id: "explain", text: summary }), deeper,
      el("p", { text: members.length + " layers (click one for its formulas):" }), list);
  }
  function openHere(i, member) {
    state.open = String(i);
    state.selected = -1;
    redraw();
    const index = level().members.findIndex((m) => m.includes(member));
    if (index >= 0) select(index, true);
  }
  function openBlock(member) {
    state.level += 1;
    state.open = null;
    levelSelect.value = state.level;
    state.selected = -1;
    redraw();
    const lv = level();
    const index = lv.members ? lv.members.findIndex((m) => m.includes(member)) : lv.rows.findIndex((r) => r[NAME] === member);
    if (index >= 0) select(index, true);
  }

  // --- the table ----------------------------------------------------------------------------------
  const search = el("input", { type: "search", id: "search", placeholder: "Filter by name or op…", oninput: (e) => { state.filter = e.target.value.toLowerCase(); drawTable(); } });
  const tableBox = el("div", { class: "tablewrap" });
  const COLUMNS = [["Layer", NAME, "name"], ["Op", OP, "op"], ["Output shape", SHAPE, "shape"], ["Params", PARAMS, "params"],
    ["MACs", MACS, "macs"], ["Activations", ACT, "activations"], ["Receptive field", FIELD, "field"]];
  const SHOWN = 1000;
  let showAll = false;
  function drawTable() {
    const lv = level(), rows = lv.rows;
    let order = rows.map((r, i) => i);
    if (state.filter) order = order.filter((i) => (rows[i][NAME] + " " + rows[i][OP]).toLowerCase().includes(state.filter));
    if (state.sortKey !== null) {
      const col = COLUMNS.find((c) => c[2] === state.sortKey)[1];
      const dir = state.sortAsc ? 1 : -1;
      order.sort((a, b) => {
        const x = rows[a][col], y = rows[b][col];
        return (typeof x === "number" ? x - y : String(x).localeCompare(String(y))) * dir || a - b;
      });
    }
    const table = el("table", { id: "layers" });
    const head = el("tr");
    for (const [label, , key] of COLUMNS) {
      const numeric = [PARAMS, MACS, ACT].includes(COLUMNS.find((c) => c[2] === key)[1]);
      const th = el("th", { "data-sort": key, class: (numeric ? "num" : "") + (state.sortKey === key ? " sorted" + (state.sortAsc ? " asc" : "") : ""), text: label,
        onclick: () => { if (state.sortKey === key) state.sortAsc = !state.sortAsc; else { state.sortKey = key; state.sortAsc = !numeric; } drawTable(); } });
      head.append(th);
    }
    if (lv.status) head.append(el("th", { text: "Change" }));
    table.append(head);
    const limit = showAll ? order.length : Math.min(order.length, SHOWN);
    for (let k = 0; k < limit; k++) {
      const i = order[k], r = rows[i];
      const tr = el("tr", { class: "clickable" + (r[MODELLED] ? "" : " unmodelled") + (lv.status ? " status-" + lv.status[i] : ""), "data-row": i, onclick: () => select(i, true) },
        el("td", { class: "name", text: r[NAME], title: r[NAME] }), el("td", { text: r[OP] }), el("td", { text: r[SHAPE] }),
        el("td", { class: "num", text: exact(r[PARAMS]) }), el("td", { class: "num", text: r[MODELLED] ? exact(r[MACS]) : "?" }),
        el("td", { class: "num", text: bytes(r[ACT]) }), el("td", { text: r[FIELD] }));
      if (lv.status) tr.append(el("td", { text: lv.status[i] }));
      table.append(tr);
    }
    const more = limit < order.length ? el("button", { text: "Show all " + exact(order.length) + " rows", onclick: () => { showAll = true; drawTable(); } }) : null;
    tableBox.replaceChildren(table);
    if (more) tableBox.append(more);
  }

  // --- memory over time -----------------------------------------------------------------------------
  function drawMemory(box) {
    const live = page.live.bytes, names = page.live.layers, n = live.length;
    if (!n) { box.append(el("p", { text: "No layers." })); return; }
    const w = 1000, h = 220, left = 70, bottom = 24;
    let peak = 0, at = 0;
    for (let i = 0; i < n; i++) if (live[i] > peak) { peak = live[i]; at = i; }
    const reported = isDiff ? doc.totals.peak_activation_bytes.new : doc.totals.peak_activation_bytes;
    const top = Math.max(peak, reported) || 1;
    const sx = (i) => left + (n > 1 ? i / (n - 1) : 0.5) * (w - left - 10);
    const sy = (v) => h - bottom - v / top * (h - bottom - 16);
    const chart = svg("svg", { viewBox: "0 0 " + w + " " + h, id: "memory-chart" });
    let d = "M" + sx(0) + " " + sy(0);
    for (let i = 0; i < n; i++) d += "L" + sx(i).toFixed(1) + " " + sy(live[i]).toFixed(1);
    d += "L" + sx(n - 1) + " " + sy(0) + "Z";
    chart.append(svg("path", { d: d, fill: "rgba(194,65,12,.18)", stroke: "#c2410c", "stroke-width": 1.5 }));
    for (const f of [0, 0.5, 1]) {
      const label = svg("text", { class: "axis", x: left - 6, y: sy(top * f) + 4, "text-anchor": "end" });
      label.textContent = bytes(Math.round(top * f));
      chart.append(label, svg("line", { x1: left, x2: w - 10, y1: sy(top * f), y2: sy(top * f), stroke: "#e2e8f0" }));
    }
    const px = sx(at), py = sy(reported);
    chart.append(svg("line", { x1: px, x2: px, y1: py, y2: h - bottom, stroke: "#1d2330", "stroke-dasharray": "4 3" }), svg("circle", { cx: px, cy: py, r: 4, fill: "#1d2330" }));
    const tag = svg("text", { x: Math.min(px + 8, w - 300), y: py - 8, "font-size": 12, id: "peak-label",
      stroke: "#fff", "stroke-width": 4, "paint-order": "stroke" });
    tag.textContent = "peak " + bytes(reported) + " after " + names[at];
    const axis = svg("text", { class: "axis", x: left, y: h - 6 }); axis.textContent = "layers in execution order →";
    chart.append(tag, axis);
    chart.addEventListener("click", (e) => {
      const box2 = chart.getBoundingClientRect();
      const i = Math.round(((e.clientX - box2.left) / box2.width * w - left) / (w - left - 10) * (n - 1));
      if (i >= 0 && i < n) showLayer(names[i]);
    });
    box.append(el("p", { class: "muted", text: "Live activation bytes after each layer runs, each tensor freed after its last use; the top is the peak in the totals (" + exact(reported) + " B)." }), chart);
  }

  // --- training ---------------------------------------------------------------------------------------
  const trainingBox = el("div");
  function drawTraining() {
    const t = doc.training.totals, lv = level();
    trainingBox.replaceChildren(el("p", { text: "One step: batch " + t.batch + ", " + t.optimizer + ", " + t.precision +
      " · forward " + count(t.forward_macs) + " MACs, backward " + count(t.backward_macs) + " MACs · memory " + bytes(t.memory_bytes) }));
    const parts = [["Weights", t.weight_bytes, "#475569"], ["Gradients", t.gradient_bytes, "#0891b2"],
      ["Optimizer state", t.optimizer_bytes, "#7c3aed"], ["Saved activations", t.saved_activation_bytes, "#c2410c"]];
    const stack = el("div", { class: "stack", id: "training-memory" });
    for (const [label, value, colour] of parts) {
      if (!value) continue;
      const part = el("div", { text: label + " " + bytes(value), title: label + " " + exact(value) + " B" });
      part.style.flex = String(value); part.style.background = colour;
      stack.append(part);
    }
    trainingBox.append(el("h3", { text: "Training memory, " + bytes(t.memory_bytes) }), stack);
    const rows = lv.training || [];
    let max = 0;
    for (const [f, b] of rows) max = Math.max(max, f + b);
    const w = 1000, h = 140, step = w / Math.max(rows.length, 1);
    const chart = svg("svg", { viewBox: "0 0 " + w + " " + h, preserveAspectRatio: "none", id: "training-chart" });
    let fwd = "", bwd = "";
    rows.forEach(([f, b], i) => {
      const x = (i * step + step / 2).toFixed(2), hf = max ? f / max * (h - 4) : 0, hb = max ? b / max * (h - 4) : 0;
      if (hf) fwd += "M" + x + " " + h + "V" + (h - hf).toFixed(2);
      if (hb) bwd += "M" + x + " " + (h - hf).toFixed(2) + "V" + (h - hf - hb).toFixed(2);
    });
    const sw = Math.max(1, step * 0.8);
    chart.append(svg("path", { d: fwd, stroke: "#475569", "stroke-width": sw, "vector-effect": "non-scaling-stroke" }),
      svg("path", { d: bwd, stroke: "#c2410c", "stroke-width": sw, "vector-effect": "non-scaling-stroke" }));
    trainingBox.append(el("h3", { text: "Forward (grey) and backward (orange) MACs per row (" + lv.label + ")" }), chart);
  }

  // --- roofline on a device (analyze --device) ------------------------------------------------------
  // page.roofline: the device's roofs and one point per layer with FLOPs [name, op, intensity,
  // FLOP/s, time, bound]; doc.roofline: the JSON's object (latency, share of time by op).
  const PALETTE = ["#2563eb", "#c2410c", "#16a34a", "#9333ea", "#db2777", "#0891b2", "#ca8a04", "#4f46e5", "#65a30d"];
  function rate(r) { return count(r) + "FLOP/s"; }
  function drawRoofline(section) {
    const roof = page.roofline, costs = doc.roofline;
    const colour = {};
    costs.share_by_op.slice(0, PALETTE.length).forEach((entry, i) => { colour[entry.op] = PALETTE[i]; });
    const colourOf = (op) => colour[op] || "#94a3b8";
    const pts = roof.points;
    const xs = pts.map((p) => p[2]).concat([roof.ridge]), ys = pts.map((p) => p[3]).concat([roof.peak]);
    const decade = (v, up) => 10 ** (up ? Math.ceil(Math.log10(v)) : Math.floor(Math.log10(v)));
    const x0 = decade(Math.min(...xs) / 2, false), x1 = decade(Math.max(...xs) * 2, true);
    const y0 = decade(Math.min(Math.min(...ys), roof.bandwidth * x0) / 2, false), y1 = decade(roof.peak * 2, true);
    const W = 900, H = 440, L = 70, R = 20, T = 16, B = 44;
    const px = (x) => L + (Math.log10(x) - Math.log10(x0)) / (Math.log10(x1) - Math.log10(x0)) * (W - L - R);
    const py = (y) => H - B - (Math.log10(y) - Math.log10(y0)) / (Math.log10(y1) - Math.log10(y0)) * (H - T - B);
    const chart = svg("svg", { id: "roofline-chart", viewBox: "0 0 " + W + " " + H, "data-x0": x0, "data-x1": x1 });
    for (let e = Math.log10(x0); e <= Math.log10(x1); e++) {
      chart.append(svg("line", { x1: px(10 ** e), x2: px(10 ** e), y1: T, y2: H - B, class: "grid" }));
      const label = svg("text", { x: px(10 ** e), y: H - B + 16, "text-anchor": "middle", class: "axis" });
      label.textContent = count(10 ** e);
      chart.append(label);
    }
    for (let e = Math.log10(y0); e <= Math.log10(y1); e++) {
      chart.append(svg("line", { x1: L, x2: W - R, y1: py(10 ** e), y2: py(10 ** e), class: "grid" }));
      const label = svg("text", { x: L - 6, y: py(10 ** e) + 4, "text-anchor": "end", class: "axis" });
      label.textContent = count(10 ** e);
      chart.append(label);
    }
    const xTitle = svg("text", { x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle", class: "axis" });
    xTitle.textContent = "arithmetic intensity (FLOPs per byte moved)";
    const yTitle = svg("text", { x: 14, y: (T + H - B) / 2, "text-anchor": "middle", class: "axis",
      transform: "rotate(-90 14 " + (T + H - B) / 2 + ")" });
    yTitle.textContent = "FLOP/s (attainable: the roof; each layer: FLOPs / its time)";
    chart.append(xTitle, yTitle);
    // The roofs: memory (bandwidth x intensity) up to the ridge, then the matrix units' peak.
    const roofPath = "M" + px(x0) + "," + py(roof.bandwidth * x0) + " L" + px(roof.ridge) + "," + py(roof.peak) +
      " L" + px(x1) + "," + py(roof.peak);
    chart.append(svg("path", { d: roofPath, class: "roof", id: "roof-line" }));
    if (roof.vector_peak < roof.peak) {
      const knee = roof.vector_peak / roof.bandwidth;
      chart.append(svg("path", { d: "M" + px(Math.max(knee, x0)) + "," + py(roof.vector_peak) + " L" + px(x1) + "," + py(roof.vector_peak),
        class: "roof vector", id: "vector-roof" }));
    }
    if (roof.cache_bandwidth) {
      const knee = roof.peak / roof.cache_bandwidth;
      chart.append(svg("path", { d: "M" + px(x0) + "," + py(roof.cache_bandwidth * x0) + " L" + px(Math.max(knee, x0)) + "," + py(roof.peak),
        class: "roof cache", id: "cache-roof" }));
    }
    chart.append(svg("line", { x1: px(roof.ridge), x2: px(roof.ridge), y1: T, y2: H - B, class: "ridge", id: "ridge",
      "data-intensity": roof.ridge }));
    const ridgeLabel = svg("text", { x: px(roof.ridge) + 4, y: T + 12, class: "axis" });
    ridgeLabel.textContent = "ridge " + roof.ridge.toFixed(1) + " FLOP/B";
    chart.append(ridgeLabel);
    const hover = el("div", { id: "roofline-hover", class: "muted", text: "Hover a point: layer, op, time and bound." });
    for (const [name, op, intensity, flopsPerS, time, bound] of pts) {
      const dot = svg("circle", { cx: px(intensity), cy: py(flopsPerS), r: 4, class: "point", fill: colourOf(op),
        "data-name": name, "data-op": op, "data-intensity": intensity });
      const text = name + " (" + op + "): " + seconds(time) + ", " + bound + "-bound, " + intensity.toFixed(1) +
        " FLOP/B, " + rate(flopsPerS);
      const title = svg("title");
      title.textContent = text;
      dot.append(title);
      dot.addEventListener("mouseenter", () => { hover.textContent = text; });
      dot.addEventListener("click", () => showLayer(name));
      chart.append(dot);
    }
    const legendBox = el("div", { class: "legend" });
    for (const [op, c] of Object.entries(colour)) {
      const sw = el("span", { class: "swatch" });
      sw.style.background = c; sw.style.borderColor = c;
      legendBox.append(el("span", {}, sw, document.createTextNode(op)));
    }
    legendBox.append(el("span", { class: "muted", text: "grey: other ops · solid: memory roof and " + roof.dtype +
      " peak · dashed: vector-unit peak" + (roof.cache_bandwidth ? ", cache roof" : "") }));
    // Time by op type, largest first, as the JSON's share_by_op.
    const bars = el("table", { id: "time-by-op" });
    bars.append(el("tr", {}, el("th", { text: "Op" }), el("th", { class: "num", text: "Time" }), el("th", { text: "Share of the latency" })));
    for (const entry of costs.share_by_op) {
      const bar = el("span", { class: "share" });
      bar.style.width = Math.max(entry.fraction * 100, 0.5) * 2.4 + "px";
      bar.style.background = colourOf(entry.op);
      bars.append(el("tr", { "data-op": entry.op, "data-fraction": entry.fraction }, el("td", { text: entry.op }),
        el("td", { class: "num", text: seconds(entry.time_s) }),
        el("td", {}, bar, document.createTextNode((entry.fraction * 100).toFixed(1) + "%"))));
    }
    section.append(
      el("p", { class: "muted", text: roof.device + ", " + costs.precision + ": estimated latency " +
        seconds(costs.latency_s) + " at batch " + costs.batch + " · " + pts.length + " layers with FLOPs drawn" }),
      legendBox, el("div", { class: "grid2 roofgrid" }, el("div", {}, chart, hover), el("div", { class: "tablewrap" }, bars)));
  }

  // --- page ---------------------------------------------------------------------------------------------
  function redraw() {
    for (const b of metricButtons.children) b.classList.toggle("on", b.getAttribute("data-metric") === state.metric);
    drawBars();
    drawGraph();
    drawTable();
    if (doc.training) drawTraining();
  }
  if (isDiff) diffHeader(); else analysisHeader();
  const cost = el("section", { id: "cost" }, el("h2", { text: "Where the cost is" + (isDiff ? " in " + page.labels[1] : "") }), el("div", { class: "grid2" }, barsBox, topBox, opsBox));
  const graph = el("section", { id: "graph-section" }, el("h2", { text: isDiff ? "Graph of " + page.labels[1] + ", changes outlined" : "Graph" }), legend,
    el("div", { class: "graphwrap" }, graphBox, details));
  const table = el("section", { id: "table" }, el("h2", { text: isDiff ? "Layers of " + page.labels[1] : "Layers" }), search, el("div", { style: "height:6px" }), tableBox);
  const memory = el("section", { id: "memory" }, el("h2", { text: "Memory over time" + (isDiff ? " in " + page.labels[1] : "") }));
  if (isDiff) main.append(diffTable(), graph, table, cost);
  else main.append(cost, graph, table);
  if (!isDiff && page.roofline) {
    const rooflineSection = el("section", { id: "roofline" }, el("h2", { text: "Roofline on " + page.roofline.device }));
    main.insertBefore(rooflineSection, graph);
    drawRoofline(rooflineSection);
  }
  if (doc.training) main.append(el("section", { id: "training" }, el("h2", { text: "Training step" }), trainingBox));
  main.append(memory);
  body.append(header, controls, main);
  drawTop();
  drawOps();
  drawMemory(memory);
  redraw();
  document.documentElement.setAttribute("data-ready", "1");
  performance.mark("archcalc-ready");  // bench/bench_html.py reads it: the page answers clicks from here

  function diffTable() {
    const layers = doc.layers.filter((l) => l.status !== "unchanged");
    let widest = 0;
    for (const l of layers) widest = Math.max(widest, Math.abs(l.delta.macs), Math.abs(l.delta.params));
    const table = el("table", { id: "difflayers" });
    table.append(el("tr", {}, el("th", { text: "Row" }), el("th", { text: "Change" }), el("th", { text: "Op" }),
      el("th", { class: "num", text: "Δ params" }), el("th", { class: "num", text: "Δ MACs" }), el("th", { text: "Δ MACs (bar)" }),
      el("th", { class: "num", text: "Δ activations" })));
    for (const l of layers) {
      const side = l.new || l.old;
      const bar = el("span", { class: "deltabar" });
      bar.style.width = (widest ? Math.abs(l.delta.macs) / widest * 200 : 0) + "px";
      bar.style.background = l.delta.macs > 0 ? "#dc2626" : "#16a34a";
      const op = l.old && l.new && l.old.op !== l.new.op ? l.old.op + " → " + l.new.op : side.op;
      table.append(el("tr", { class: "status-" + l.status }, el("td", { class: "name", text: l.old && l.new && l.old.name !== l.new.name ? l.old.name + " → " + l.new.name : l.name }),
        el("td", { text: l.status }), el("td", { text: op }),
        el("td", { class: "num", text: signed(exact(l.delta.params), l.delta.params) }),
        el("td", { class: "num", text: signed(exact(l.delta.macs), l.delta.macs) }), el("td", {}, bar),
        el("td", { class: "num", text: signed(bytes(l.delta.activation_bytes), l.delta.activation_bytes) })));
    }
    return el("section", { id: "changes" }, el("h2", { text: "What changed (" + layers.length + " rows)" }), el("div", { class: "tablewrap" }, table));
  }
})();
