/* Parallel coordinates on a 2D canvas, with a brush per axis: sweep.js draws a sweep's runs with it.
 *
 * plotly's parallel coordinates need WebGL: without a GPU (a headless or
 * remote browser, a VM) one drawing of 10,000 lines takes seconds, and a
 * live page redraws every second. A 2D canvas draws them in tens of
 * milliseconds. Lines are drawn in colour buckets (one path per bucket);
 * axes, ticks, labels and brushes are SVG over the canvas, all text set
 * with textContent.
 *
 * new BatchrunParcoords(div, onBrush).draw({dims, color, colorTitle, reverse})
 *   dims: [{name, label, values, tickvals?, ticktext?, range?}] (values already on the axis: log10 for a log axis)
 *   onBrush(name, [lo, hi] | null) when a range is dragged along an axis (or cleared by a click).
 */
(function (global) {
  'use strict';
  var SVG = 'http://www.w3.org/2000/svg';
  var MARGIN = {l: 70, r: 130, t: 46, b: 28};
  var BUCKETS = 48;  // colours lines are grouped by: one canvas path each
  // Viridis, as plotly draws it.
  var VIRIDIS = [[68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142], [31, 158, 137], [53, 183, 121], [109, 205, 89], [180, 222, 44], [253, 231, 37]];

  function viridis(t) {
    t = Math.max(0, Math.min(1, t)) * (VIRIDIS.length - 1);
    var i = Math.min(VIRIDIS.length - 2, Math.floor(t)), f = t - i, a = VIRIDIS[i], b = VIRIDIS[i + 1];
    return 'rgb(' + [0, 1, 2].map(function (k) { return Math.round(a[k] + (b[k] - a[k]) * f); }).join(',') + ')';
  }
  function svg(tag, attrs, parent) {
    var e = document.createElementNS(SVG, tag);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  function extent(values) {
    var lo = Infinity, hi = -Infinity;
    for (var i = 0; i < values.length; i++) { if (values[i] < lo) lo = values[i]; if (values[i] > hi) hi = values[i]; }
    if (lo === hi) { lo -= 0.5; hi += 0.5; }
    return [lo, hi];
  }
  // Round ticks for a linear axis: steps of 1, 2 or 5 times a power of ten.
  function niceTicks(lo, hi) {
    var raw = (hi - lo) / 5, mag = Math.pow(10, Math.floor(Math.log10(raw))), step = mag;
    [1, 2, 5, 10].some(function (m) { step = m * mag; return raw <= step; });
    var out = [];
    for (var v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
    return {tickvals: out, ticktext: out.map(function (v) { return String(Number(v.toPrecision(6))); })};
  }

  function Parcoords(div, onBrush) {
    this.div = div;
    this.onBrush = onBrush;
    div.textContent = '';
    div.style.position = 'relative';
    this.canvas = document.createElement('canvas');
    this.canvas.style.position = 'absolute';
    this.overlay = svg('svg', {class: 'pc-overlay'});
    this.overlay.style.position = 'absolute';
    this.overlay.style.left = this.overlay.style.top = this.canvas.style.left = this.canvas.style.top = '0';
    div.appendChild(this.canvas);
    div.appendChild(this.overlay);
    this.spec = null;
  }

  Parcoords.prototype.draw = function (spec) {
    this.spec = spec;
    var width = this.div.clientWidth || 1000, height = this.div.clientHeight || 440, dpr = global.devicePixelRatio || 1;
    this.width = width; this.height = height;
    this.canvas.width = width * dpr; this.canvas.height = height * dpr;
    this.canvas.style.width = width + 'px'; this.canvas.style.height = height + 'px';
    this.overlay.setAttribute('width', width); this.overlay.setAttribute('height', height);
    var n = spec.dims.length, plotW = width - MARGIN.l - MARGIN.r;
    this.xs = spec.dims.map(function (_, i) { return MARGIN.l + (n > 1 ? plotW * i / (n - 1) : plotW / 2); });
    this.scales = spec.dims.map(function (d) {
      var e = d.tickvals && d.tickvals.length ? extent(d.values.concat(d.tickvals)) : extent(d.values);
      return {lo: e[0], hi: e[1]};
    });
    this.drawLines();
    this.drawAxes();
  };

  Parcoords.prototype.y = function (i, v) {
    var s = this.scales[i], top = MARGIN.t, bottom = this.height - MARGIN.b;
    return bottom - (v - s.lo) / (s.hi - s.lo) * (bottom - top);
  };
  Parcoords.prototype.value = function (i, y) {
    var s = this.scales[i], top = MARGIN.t, bottom = this.height - MARGIN.b;
    return s.lo + (bottom - y) / (bottom - top) * (s.hi - s.lo);
  };

  // Is line k inside every brushed range?
  Parcoords.prototype.selected = function (k) {
    var dims = this.spec.dims;
    for (var i = 0; i < dims.length; i++) {
      var r = dims[i].range;
      if (r && (dims[i].values[k] < r[0] || dims[i].values[k] > r[1])) return false;
    }
    return true;
  };

  Parcoords.prototype.drawLines = function () {
    var spec = this.spec, ctx = this.canvas.getContext('2d'), dpr = global.devicePixelRatio || 1;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, this.width, this.height);
    var count = spec.dims.length ? spec.dims[0].values.length : 0, c = extent(spec.color);
    var buckets = [], faded = [], self = this;
    for (var b = 0; b < BUCKETS; b++) buckets.push([]);
    for (var k = 0; k < count; k++) {
      if (!this.selected(k)) { faded.push(k); continue; }
      var t = (spec.color[k] - c[0]) / (c[1] - c[0]);
      if (spec.reverse) t = 1 - t;
      buckets[Math.min(BUCKETS - 1, Math.floor(t * BUCKETS))].push(k);
    }
    function path(lines) {
      ctx.beginPath();
      lines.forEach(function (k) {
        spec.dims.forEach(function (d, i) {
          var y = self.y(i, d.values[k]);
          if (i) ctx.lineTo(self.xs[i], y); else ctx.moveTo(self.xs[i], y);
        });
      });
      ctx.stroke();
    }
    ctx.lineWidth = 1;
    ctx.globalAlpha = 0.25;
    ctx.strokeStyle = '#bbb';
    if (faded.length) path(faded);
    ctx.globalAlpha = count > 2000 ? 0.35 : 0.7;
    buckets.forEach(function (lines, b) {
      if (!lines.length) return;
      ctx.strokeStyle = viridis((b + 0.5) / BUCKETS);
      path(lines);
    });
    ctx.globalAlpha = 1;
  };

  Parcoords.prototype.drawAxes = function () {
    var self = this, spec = this.spec, root = this.overlay;
    root.textContent = '';
    spec.dims.forEach(function (d, i) {
      var x = self.xs[i], g = svg('g', {class: 'pc-axis', 'data-name': d.name}, root);
      svg('line', {x1: x, x2: x, y1: MARGIN.t, y2: self.height - MARGIN.b, stroke: '#444'}, g);
      var label = svg('text', {x: x, y: MARGIN.t - 22, 'text-anchor': 'middle', class: 'pc-label'}, g);
      label.textContent = d.label;
      var ticks = d.tickvals ? {tickvals: d.tickvals, ticktext: d.ticktext} : niceTicks(self.scales[i].lo, self.scales[i].hi);
      ticks.tickvals.forEach(function (v, k) {
        var y = self.y(i, v);
        svg('line', {x1: x - 4, x2: x, y1: y, y2: y, stroke: '#444'}, g);
        var t = svg('text', {x: x - 7, y: y + 4, 'text-anchor': 'end', class: 'tick'}, g);
        t.textContent = ticks.ticktext[k];
      });
      if (d.range) {
        var y1 = self.y(i, d.range[1]), y0 = self.y(i, d.range[0]);
        svg('rect', {x: x - 6, width: 12, y: Math.min(y0, y1), height: Math.max(2, Math.abs(y0 - y1)), class: 'pc-range'}, g);
      }
      var hit = svg('rect', {x: x - 12, width: 24, y: MARGIN.t - 4, height: self.height - MARGIN.t - MARGIN.b + 8, class: 'pc-brush'}, g);
      hit.addEventListener('mousedown', function (ev) { self.startBrush(i, ev); });
    });
    this.drawColorbar();
  };

  Parcoords.prototype.drawColorbar = function () {
    var spec = this.spec, root = this.overlay, x = this.width - MARGIN.r + 40, top = MARGIN.t, h = this.height - MARGIN.t - MARGIN.b;
    var grad = svg('linearGradient', {id: 'pc-grad', x1: 0, x2: 0, y1: 1, y2: 0}, svg('defs', {}, root));
    for (var s = 0; s <= 10; s++) svg('stop', {offset: s / 10, 'stop-color': viridis(spec.reverse ? 1 - s / 10 : s / 10)}, grad);
    svg('rect', {x: x, y: top, width: 14, height: h, fill: 'url(#pc-grad)'}, root);
    var c = extent(spec.color), ticks = niceTicks(c[0], c[1]);
    ticks.tickvals.forEach(function (v, k) {
      var y = top + h - (v - c[0]) / (c[1] - c[0]) * h;
      var t = svg('text', {x: x + 18, y: y + 4, class: 'tick'}, root);
      t.textContent = ticks.ticktext[k];
    });
    // The title runs along the bar, clear of the last axis's label.
    var title = svg('text', {x: 0, y: 0, class: 'pc-label', 'text-anchor': 'middle', transform: 'translate(' + (x + 66) + ',' + (top + h / 2) + ') rotate(90)'}, root);
    title.textContent = 'colour: ' + spec.colorTitle;
  };

  // Dragging along axis i selects the values between the two ends; a click (no drag) clears the axis.
  Parcoords.prototype.startBrush = function (i, ev) {
    ev.preventDefault();
    var self = this, box = this.overlay.getBoundingClientRect(), y0 = ev.clientY - box.top, moved = false;
    function range(y) {
      var a = self.value(i, y0), b = self.value(i, y);
      return [Math.min(a, b), Math.max(a, b)];
    }
    function move(e) {
      var y = e.clientY - box.top;
      if (Math.abs(y - y0) > 3) moved = true;
      if (!moved) return;
      self.spec.dims[i].range = range(y);
      self.drawLines();
      self.drawAxes();
    }
    function up(e) {
      global.removeEventListener('mousemove', move);
      global.removeEventListener('mouseup', up);
      var dim = self.spec.dims[i];
      dim.range = moved ? range(e.clientY - box.top) : null;
      self.drawLines();
      self.drawAxes();
      self.onBrush(dim.name, dim.range);
    }
    global.addEventListener('mousemove', move);
    global.addEventListener('mouseup', up);
  };

  global.BatchrunParcoords = Parcoords;
})(window);
