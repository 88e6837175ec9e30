/* Helpers both archcalc pages use (page.js: the report; sweep.js: a sweep), inlined before
 * either: numbers formatted as archcalc/core/units.py and report/roofline.human_time format
 * them, and DOM and SVG element builders. Written for archcalc; no library. */
"use strict";
const archcalcUi = (function () {
  const SVG = "http://www.w3.org/2000/svg";
  function scaled(n, units) {
    for (const [u, s] of units) if (Math.abs(n) >= s) return (n / s).toFixed(2) + " " + u;
    return null;
  }
  function exact(n) { return n.toLocaleString("en-US"); }
  function count(n) { return scaled(n, [["P", 1e15], ["T", 1e12], ["G", 1e9], ["M", 1e6], ["K", 1e3]]) ?? String(n); }
  function bytes(n) { return scaled(n, [["TiB", 2 ** 40], ["GiB", 2 ** 30], ["MiB", 2 ** 20], ["KiB", 2 ** 10]]) ?? n + " B"; }
  function seconds(t) {
    if (!t) return "0";
    return scaled(t, [["s", 1], ["ms", 1e-3], ["us", 1e-6]]) ?? (t / 1e-9).toFixed(2) + " ns";
  }
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v; else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v); else node.setAttribute(k, v);
    }
    for (const c of children) if (c != null) node.append(c);
    return node;
  }
  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }
  return { SVG, exact, count, bytes, seconds, el, svg };
})();
