// archcalc sweep page (analyze --sweep ... --format html): the sweep's JSON document, drawn.
// A chart of one metric against the first swept dim, one line per value of the other swept
// dims, and the table of every point. No request leaves the page.
(function () {
  const data = JSON.parse(document.getElementById("archcalc-data").textContent);
  const { exact, count, bytes, seconds, el, svg } = archcalcUi;  // ui.js
  const doc = data.json;

  const points = doc.points, swept = doc.swept, x = swept[0], others = swept.slice(1);
  const METRICS = [["macs", "MACs", count], ["flops", "FLOPs", count], ["peak_activation_bytes", "Peak activations", bytes],
    ["activation_bytes", "All outputs", bytes], ["kv_cache_bytes", "KV cache", bytes], ["latency_s", "Latency", seconds]]
    .filter(([key]) => points.some((p) => p[key] !== null && p[key] !== undefined));
  const state = { metric: METRICS[0][0] };
  const COLOURS = ["#c2410c", "#2563eb", "#16a34a", "#9333ea", "#0891b2", "#d97706", "#dc2626", "#4b5563"];

  const header = el("header", {}, el("h1", { text: "archcalc sweep: " + (doc.model || doc.path) }),
    el("div", { class: "sub", text: doc.path + " · " + points.length + " points of " + swept.join(" × ") + " · " + doc.method }));
  const main = el("main");
  const buttons = el("span", { class: "seg", id: "sweep-metric" });
  const chartBox = el("div", { id: "sweep-chart" });
  const chart = el("section", { id: "sweep-plot" }, el("h2", { text: "How the cost grows with " + x }),
    el("div", { class: "controls-inline" }, buttons), chartBox);

  // A log axis when the values span a decade or more (sequence lengths usually do), else linear.
  function scale(values, from, to) {
    const lo = Math.min(...values), hi = Math.max(...values);
    const log = lo > 0 && hi / lo >= 10;
    const f = log ? Math.log : (v) => v;
    const a = f(lo), b = f(hi);
    return { log, at: (v) => (b === a ? (from + to) / 2 : from + (f(v) - a) / (b - a) * (to - from)) };
  }
  function drawChart() {
    chartBox.textContent = "";
    const [key, label, format] = METRICS.find(([k]) => k === state.metric);
    const W = 860, H = 380, L = 90, R = 170, T = 36, B = 44;
    const shown = points.filter((p) => p[key] !== null && p[key] !== undefined);
    const sx = scale(shown.map((p) => p.bindings[x]), L, W - R);
    const sy = scale(shown.map((p) => p[key]), H - B, T);
    const plot = svg("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img",
      "aria-label": label + " against " + x });
    plot.append(svg("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }),
      svg("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }));
    const xs = [...new Set(shown.map((p) => p.bindings[x]))].sort((a, b) => a - b);
    for (const v of xs) plot.append(svg("text", { x: sx.at(v), y: H - B + 16, "text-anchor": "middle", class: "tick" }, String(v)));
    plot.append(svg("text", { x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle", class: "axislabel" },
      x + (sx.log ? " (log scale)" : "")));
    const ys = shown.map((p) => p[key]);
    for (const v of [Math.min(...ys), Math.max(...ys)]) plot.append(svg("text", { x: L - 6, y: sy.at(v) + 4, "text-anchor": "end", class: "tick" }, format(v)));
    plot.append(svg("text", { x: L, y: 18, "text-anchor": "middle", class: "axislabel" }, label + (sy.log ? " (log scale)" : "")));
    // One line per combination of the other swept dims, in the order the points come.
    const series = new Map();
    for (const p of shown) {
      const name = others.map((d) => d + "=" + p.bindings[d]).join(", ") || label;
      if (!series.has(name)) series.set(name, []);
      series.get(name).push(p);
    }
    let index = 0;
    for (const [name, members] of series) {
      const colour = COLOURS[index % COLOURS.length];
      members.sort((a, b) => a.bindings[x] - b.bindings[x]);
      const coords = members.map((p) => [sx.at(p.bindings[x]), sy.at(p[key])]);
      plot.append(svg("polyline", { class: "series", "data-series": name, stroke: colour, fill: "none",
        points: coords.map((c) => c.join(",")).join(" ") }));
      members.forEach((p, i) => {
        const dot = svg("circle", { class: "point", cx: coords[i][0], cy: coords[i][1], r: 4, fill: colour,
          "data-value": String(p[key]), "data-x": String(p.bindings[x]) });
        dot.append(svg("title", {}, Object.entries(p.bindings).map(([k, v]) => k + "=" + v).join(", ") + ": " + format(p[key])));
        plot.append(dot);
      });
      plot.append(svg("text", { x: W - R + 10, y: T + 14 + 16 * index, fill: colour, class: "legend" }, name));
      index += 1;
    }
    chartBox.append(plot);
    for (const b of buttons.children) b.classList.toggle("on", b.dataset.metric === state.metric);
  }
  for (const [key, label] of METRICS) {
    buttons.append(el("button", { text: label, "data-metric": key, onclick: () => { state.metric = key; drawChart(); } }));
  }

  const table = el("table", { id: "sweep-points" });
  const columns = [...swept.map((d) => [d, (p) => String(p.bindings[d])]), ["Params", (p) => exact(p.params)],
    ...METRICS.map(([key, label, format]) => [label, (p) => (p[key] === null || p[key] === undefined ? "-" : format(p[key]))])];
  table.append(el("tr", {}, ...columns.map(([label]) => el("th", { class: "num", text: label }))));
  for (const p of points) table.append(el("tr", { class: "point-row" }, ...columns.map(([, cell]) => el("td", { class: "num", text: cell(p) }))));
  main.append(chart, el("section", { id: "sweep-table" }, el("h2", { text: "Points" }), el("div", { class: "tablewrap" }, table)));
  document.body.append(header, main);
  drawChart();
  document.documentElement.setAttribute("data-ready", "1");
})();
