/* Draw a sweep: the document of batchrun/results/plots.py, in `batchrun report` and `batchrun ui`.
 *
 * BatchrunSweep.create(root, options) builds the page inside `root` and
 * returns a view; view.setDoc(doc) draws a whole document, view.applyDiff(d)
 * folds in what changed (live pages). Where data comes from is the caller's:
 * options.histories(ids, metric), options.importance(metric) and
 * options.groups(over, metric) return promises; options.kill(jobId) and
 * options.runLink(jobId) exist only where they make sense.
 *
 * Which axis a parameter or metric gets is decided in Python (plots.py) and
 * only applied here. Everything a user wrote reaches the page as text
 * (textContent), or, for plotly labels that read a few HTML tags, with <, >
 * and & as entities (esc); parallel coordinates tick labels are plain text.
 */
(function (global) {
  'use strict';
  var CFG = {displaylogo: false, responsive: true};
  var STATES = ['succeeded', 'failed', 'timeout', 'interrupted', 'killed', 'stopped', 'running', 'pending', 'ignored', 'removed'];
  var BAD = {failed: 1, timeout: 1, killed: 1, interrupted: 1};
  var ENDED = {succeeded: 1, failed: 1, timeout: 1, killed: 1, stopped: 1};
  var PAGE = 50;            // table rows per page
  var GL_ABOVE = 2000;      // points per plot beyond which WebGL draws them
  var OTHER_METRICS = 3;    // metrics besides the chosen one in parallel coordinates
  var HISTORY_RUNS = [10, 20, 50, 100];

  function esc(text) {
    return String(text).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  }
  function isNum(v) { return typeof v === 'number' && isFinite(v); }
  function fmt(v) {
    if (v === null || v === undefined) return '';
    if (typeof v === 'number') return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(6)));
    if (v === true) return 'True';
    if (v === false) return 'False';
    return String(v);
  }
  function duration(s) {
    if (!isNum(s)) return '';
    if (s < 10) return s.toFixed(2) + 's';
    if (s < 60) return s.toFixed(1) + 's';
    var m = Math.floor(s / 60), sec = Math.floor(s % 60);
    if (m < 60) return m + 'm' + (sec < 10 ? '0' : '') + sec + 's';
    var h = Math.floor(m / 60); m = m % 60;
    return h + 'h' + (m < 10 ? '0' : '') + m + 'm';
  }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  // A command's words (quotes kept), so that it wraps between flags only.
  function words(command) {
    return String(command).match(/(?:[^\s'"\\]+|\\.|'[^']*'?|"(?:\\.|[^"\\])*"?)+/g) || [];
  }
  function commandNode(command) {
    var span = el('span', 'cmd');
    words(command).forEach(function (w, i) {
      if (i) span.appendChild(document.createTextNode(' '));
      span.appendChild(el('span', null, w));
    });
    return span;
  }

  // ---- axes: what plots.py decided, applied -------------------------------------------
  function logTicks(lo, hi) {
    var a = Math.ceil(lo - 1e-9), b = Math.floor(hi + 1e-9), vals = [];
    var step = Math.max(1, Math.ceil((b - a) / 8));
    for (var k = a; k <= b; k += step) vals.push(k);
    // Few decades inside: the ends too, so that the axis says where it starts and stops.
    if (vals.length < 3) vals = [lo].concat(vals.filter(function (k) { return k - lo > 0.15 && hi - k > 0.15; }), [hi]);
    return {tickvals: vals, ticktext: vals.map(function (k) { return fmt(Number(Math.pow(10, k).toPrecision(3))); })};
  }
  // An axis of parallel coordinates: value -> coordinate, and its ticks.
  function pcAxis(spec, values) {
    var kind = spec.kind;
    if (kind === 'category') {
      var index = {};
      spec.categories.forEach(function (c, i) { index[c] = i; });
      return {coord: function (v) { return v === null || v === undefined || !(fmt(v) in index) ? null : index[fmt(v)]; },
              ticks: function () { return {tickvals: spec.categories.map(function (_, i) { return i; }), ticktext: spec.categories}; }};
    }
    if (kind === 'log') {
      return {coord: function (v) { return isNum(v) && v > 0 ? Math.log10(v) : null; },
              ticks: function (coords) { return logTicks(Math.min.apply(null, coords), Math.max.apply(null, coords)); }};
    }
    return {coord: function (v) { return isNum(v) ? v : null; },
            ticks: function (coords) {
              if (kind !== 'int') return null;
              var distinct = Array.from(new Set(coords)).sort(function (a, b) { return a - b; });
              return distinct.length <= 12 ? {tickvals: distinct, ticktext: distinct.map(fmt)} : {tickformat: 'd'};
            }};
  }
  // A cartesian axis for a parameter: plotly's settings, and the x values of some rows.
  function cartesian(spec, values) {
    if (spec.kind === 'category') {
      return {axis: {type: 'category', categoryorder: 'array', categoryarray: spec.categories.map(esc)},
              x: values.map(function (v) { return esc(fmt(v)); })};
    }
    if (spec.kind === 'log') return {axis: {type: 'log'}, x: values};
    if (spec.kind === 'int') {
      var distinct = Array.from(new Set(values.filter(isNum))).sort(function (a, b) { return a - b; });
      var axis = distinct.length <= 12 ? {tickmode: 'array', tickvals: distinct, ticktext: distinct.map(fmt)} : {tickformat: 'd'};
      return {axis: axis, x: values};
    }
    return {axis: {}, x: values};
  }
  function metricAxis(log) { return log ? {type: 'log'} : {}; }
  // Steps are whole numbers: never a tick at 0.5.
  function stepAxis(xs) {
    var hi = -Infinity, lo = Infinity;
    xs.forEach(function (x) { if (x > hi) hi = x; if (x < lo) lo = x; });
    return hi - lo <= 10 ? {tickformat: 'd', dtick: 1} : {tickformat: 'd'};
  }

  // ---- the view ------------------------------------------------------------------------
  function Sweep(root, options) {
    this.root = root;
    this.opts = options || {};
    this.doc = null;
    this.rows = [];
    this.index = {};
    this.at = {};
    this.metric = null;
    this.sort = {col: 'line', desc: false};
    this.page = 0;
    this.hidden = {};      // states unticked
    this.query = {terms: [], conds: []};
    this.brush = {};       // parallel coordinates key -> [[lo, hi], ...]
    this.dirty = {};
    this.visible = {};
    this.drawing = false;
    this.smoothing = 0;
    this.historyRuns = 20;
    this.over = null;
    this.cache = {};
    this.version = 0;
    this.drawCount = {};
    this.drawTimes = {};
  }

  Sweep.prototype.setDoc = function (doc) {
    var structure = !this.doc || JSON.stringify([doc.columns, doc.params, doc.metrics]) !== JSON.stringify([this.doc.columns, this.doc.params, this.doc.metrics]);
    this.doc = doc;
    this.rows = doc.rows.slice();
    this.at = {};
    var at = this.at;
    doc.columns.forEach(function (c, i) { at[c] = i; });
    this.reindex();
    if (!this.metric || !doc.metrics.some(function (m) { return m.name === this.metric; }, this)) this.metric = doc.metric;
    if (structure) this.build();
    this.changed(true);
  };

  // Rows changed or came (live): `diff.rows` are whole rows keyed by job id; `diff.removed` job ids.
  Sweep.prototype.applyDiff = function (diff) {
    var i, id, jobAt = this.at.job_id;
    for (i = 0; i < (diff.rows || []).length; i++) {
      id = diff.rows[i][jobAt];
      if (id in this.index) this.rows[this.index[id]] = diff.rows[i];
      else { this.index[id] = this.rows.length; this.rows.push(diff.rows[i]); }
    }
    if (diff.removed && diff.removed.length) {
      var gone = new Set(diff.removed);
      this.rows = this.rows.filter(function (r) { return !gone.has(r[jobAt]); });
      this.reindex();
    }
    if (diff.counts) { this.doc.counts = diff.counts; this.drawCounts(); }
    var structural = false;
    ['params', 'metrics'].forEach(function (key) {
      if (diff[key] && JSON.stringify(diff[key]) !== JSON.stringify(this.doc[key])) { this.doc[key] = diff[key]; structural = true; }
    }, this);
    if (structural) this.build();
    this.changed(true);
  };

  Sweep.prototype.reindex = function () {
    var index = this.index = {}, jobAt = this.at.job_id;
    this.rows.forEach(function (r, i) { index[r[jobAt]] = i; });
  };

  Sweep.prototype.value = function (row, col) { var i = this.at[col]; return i === undefined ? undefined : row[i]; };
  Sweep.prototype.swept = function () { return this.doc.params.filter(function (p) { return p.kind !== 'constant'; }); };
  Sweep.prototype.metricSpec = function (name) {
    for (var i = 0; i < this.doc.metrics.length; i++) if (this.doc.metrics[i].name === name) return this.doc.metrics[i];
    return {name: name, log: false};
  };

  // ---- building the sections ------------------------------------------------------------
  Sweep.prototype.build = function () {
    var self = this, root = this.root;
    root.textContent = '';
    this.cache = {};
    var controls = el('div', 'br-controls');
    // A page may have its counts already (the report writes them in its HTML): they are kept up to date there.
    this.counts = this.opts.counts || root.appendChild(el('p', 'counts'));
    root.appendChild(controls);
    if (this.doc.metrics.length) {
      var label = el('label', null, 'metric ');
      var select = el('select');
      select.id = 'br-metric';
      this.doc.metrics.forEach(function (m) { var o = el('option', null, m.name); o.value = m.name; select.appendChild(o); });
      select.value = this.metric;
      select.addEventListener('change', function () { self.metric = select.value; self.cache = {}; self.changed(false); });
      label.appendChild(select);
      controls.appendChild(label);
      controls.appendChild(el('span', 'br-note', '(' + (this.doc.goal === 'max' ? 'higher' : 'lower') + ' is better for ' + this.doc.metric + ')'));
    }
    var states = el('span');
    states.id = 'br-states';
    this.stateBoxes = states;
    controls.appendChild(states);
    var search = el('input');
    search.type = 'search';
    search.id = 'br-filter';
    search.placeholder = 'filter: text, or lr<0.01 layers=2 loss<=0.5';
    search.addEventListener('input', function () { self.query = self.parseQuery(search.value); self.page = 0; self.changed(false); });
    controls.appendChild(search);
    var clear = el('button', null, 'clear filters');
    clear.addEventListener('click', function () {
      search.value = ''; self.query = {terms: [], conds: []}; self.hidden = {}; self.brush = {}; self.page = 0;
      if (self.pc) self.pc.spec.dims.forEach(function (d) { d.range = null; });
      self.drawStates(); self.markDirty('parcoords'); self.changed(false);
    });
    controls.appendChild(clear);
    this.shown = el('span', 'br-note');
    this.shown.id = 'br-shown';
    controls.appendChild(this.shown);
    var constants = this.doc.params.filter(function (p) { return p.kind === 'constant'; });
    if (constants.length) {
      root.appendChild(el('p', 'br-constants', 'constant: ' + constants.map(function (p) { return p.name + '=' + fmt(p.value); }).join(', ')));
    }
    this.sections = {};
    var add = function (key, title, plot) {
      var section = el('div', 'br-section');
      section.id = 'br-' + key;
      var h = el('h2', null, title);
      section.appendChild(h);
      var body = el('div', plot ? 'br-plot' : 'br-pending');
      body.id = key;
      section.appendChild(body);
      root.appendChild(section);
      self.sections[key] = {section: section, title: h, body: body};
    };
    add('parcoords', 'Parallel coordinates (drag along an axis to filter; click it to clear)', true);
    add('table', 'Runs', false);
    add('scatters', 'Metric against each parameter', false);
    add('importance', 'Parameter importance', false);
    add('history', 'History', false);
    add('bestsofar', 'Best so far, in run order', true);
    add('groups', 'Groups', false);
    this.drawStates();
    if (this.observer) this.observer.disconnect();
    if (this.opts.lazy && global.IntersectionObserver) {
      // Until the observer first reports, nothing is known to be in view: the first drawing waits for it.
      this.observed = false;
      this.observer = new IntersectionObserver(function (entries) {
        entries.forEach(function (e) { self.visible[e.target.id.slice(3)] = e.isIntersecting; });
        self.observed = true;
        self.schedule();
      }, {rootMargin: '200px'});
      Object.keys(this.sections).forEach(function (k) { self.observer.observe(self.sections[k].section); });
    } else {
      this.observed = true;
      Object.keys(this.sections).forEach(function (k) { self.visible[k] = true; });
    }
  };

  Sweep.prototype.drawCounts = function () {
    var counts = this.doc.counts, box = this.counts;
    box.textContent = '';
    var total = 0;
    STATES.forEach(function (s) { total += counts[s] || 0; });
    box.appendChild(document.createTextNode(total + ' runs: '));
    STATES.forEach(function (s) {
      if (counts[s]) box.appendChild(el('span', 'st s-' + s, counts[s] + ' ' + s));
    });
  };

  Sweep.prototype.drawStates = function () {
    var self = this, box = this.stateBoxes;
    box.textContent = '';
    STATES.forEach(function (s) {
      if (!self.doc.counts[s] && !self.hidden[s]) return;
      var label = el('label', 'st s-' + s);
      var box2 = el('input');
      box2.type = 'checkbox';
      box2.checked = !self.hidden[s];
      box2.dataset.state = s;
      box2.addEventListener('change', function () { if (box2.checked) delete self.hidden[s]; else self.hidden[s] = true; self.page = 0; self.changed(false); });
      label.appendChild(box2);
      label.appendChild(document.createTextNode(' ' + s));
      box.appendChild(label);
    });
  };

  // ---- filtering ------------------------------------------------------------------------
  Sweep.prototype.parseQuery = function (text) {
    var terms = [], conds = [], self = this;
    (text.match(/\S+/g) || []).forEach(function (word) {
      var m = /^([^<>=!]+)(<=|>=|!=|=|<|>)(.*)$/.exec(word);
      if (m && m[1] in self.at) conds.push({col: m[1], op: m[2], text: m[3], num: m[3] !== '' && isFinite(Number(m[3])) ? Number(m[3]) : null});
      else terms.push(word.toLowerCase());
    });
    return {terms: terms, conds: conds};
  };

  function test(cond, v) {
    if (cond.num !== null && isNum(v)) {
      switch (cond.op) {
        case '<': return v < cond.num; case '<=': return v <= cond.num; case '>': return v > cond.num;
        case '>=': return v >= cond.num; case '=': return v === cond.num; default: return v !== cond.num;
      }
    }
    var t = fmt(v);
    if (cond.op === '=') return t === cond.text;
    if (cond.op === '!=') return t !== cond.text;
    return false;
  }

  // Rows that pass the state, text and brush filters (brush: false leaves parallel coordinates' own filter out).
  Sweep.prototype.filtered = function (brush) {
    var key = brush === false ? 'filteredNoBrush' : 'filtered';
    if (this.cache[key]) return this.cache[key];
    var self = this, stateAt = this.at.state, cmdAt = this.at.command;
    var q = this.query, brushes = brush === false ? [] : this.activeBrushes();
    var out = this.rows.filter(function (r) {
      if (self.hidden[r[stateAt]]) return false;
      for (var i = 0; i < q.conds.length; i++) if (!test(q.conds[i], r[self.at[q.conds[i].col]])) return false;
      if (q.terms.length) {
        var hay = (r[cmdAt] + ' ' + r[stateAt]).toLowerCase();
        for (var j = 0; j < q.terms.length; j++) if (hay.indexOf(q.terms[j]) < 0) return false;
      }
      for (var k = 0; k < brushes.length; k++) {
        var c = brushes[k].axis.coord(r[brushes[k].at]), ok = false;
        if (c === null) return false;
        for (var n = 0; n < brushes[k].ranges.length; n++) if (c >= brushes[k].ranges[n][0] && c <= brushes[k].ranges[n][1]) ok = true;
        if (!ok) return false;
      }
      return true;
    });
    this.cache[key] = out;
    return out;
  };

  Sweep.prototype.activeBrushes = function () {
    var out = [];
    for (var key in this.brush) {
      if (!this.brush[key] || !this.brush[key].length || !(key in this.at)) continue;
      out.push({at: this.at[key], ranges: this.brush[key], axis: this.axisFor(key)});
    }
    return out;
  };

  Sweep.prototype.axisFor = function (name) {
    var spec = this.doc.params.filter(function (p) { return p.name === name; })[0];
    if (!spec) spec = {kind: this.metricSpec(name).log ? 'log' : 'linear'};
    return pcAxis(spec);
  };

  // ---- drawing, throttled ------------------------------------------------------------------
  Sweep.prototype.markDirty = function (key) { this.dirty[key] = true; };
  Sweep.prototype.changed = function (data) {
    delete this.cache.filtered; delete this.cache.filteredNoBrush;
    if (data) { this.cache = {}; this.version++; }
    var self = this;
    ['parcoords', 'table', 'scatters', 'bestsofar', 'history', 'importance', 'groups'].forEach(function (k) { self.dirty[k] = true; });
    if (this.counts && data) this.drawCounts();
    if (this.stateBoxes && data) this.drawStates();
    this.schedule();
  };

  Sweep.prototype.schedule = function () {
    if (this.timer || this.drawing) { this.again = true; return; }
    var self = this, wait = Math.max(0, (this.nextDraw || 0) - Date.now());
    this.timer = setTimeout(function () { self.timer = null; self.drawDirty(); }, wait);
  };

  Sweep.prototype.drawDirty = function () {
    var self = this, started = Date.now(), jobs = [];
    if (!this.observed) return Promise.resolve();
    this.drawing = true;
    this.again = false;
    // What asks the server first (it answers while this page draws), then what draws here.
    var order = ['history', 'importance', 'groups', 'table', 'parcoords', 'scatters', 'bestsofar'];
    order.forEach(function (key) {
      if (!self.dirty[key] || !self.visible[key]) return;
      self.dirty[key] = false;
      var done;
      try { done = self['draw_' + key](); } catch (err) { done = Promise.reject(err); }
      jobs.push(Promise.resolve(done).then(function () {
        self.drawCount[key] = (self.drawCount[key] || 0) + 1;
        self.drawTimes[key] = Date.now() - started;  // ms from the start of this drawing (benchmarks/ui_bench.py reads it)
      }, function (err) {
        self.sections[key].body.textContent = 'cannot draw: ' + err;
        if (global.console) console.error(err);  // a bug: tests look for these
      }));
    });
    if (this.shown) this.shown.textContent = 'showing ' + this.filtered().length + ' of ' + this.rows.length;
    return Promise.all(jobs).then(function () {
      self.drawing = false;
      // Heavy redraws (thousands of runs) come at most every other draw time: the page stays usable while runs pour in.
      self.nextDraw = Date.now() + Math.max(300, 2 * (Date.now() - started));
      if (!global.batchrunReady) {
        global.batchrunReady = true;
        if (self.opts.onReady) self.opts.onReady();
      }
      if (self.again || Object.keys(self.dirty).some(function (k) { return self.dirty[k] && self.visible[k]; })) self.schedule();
    });
  };

  // plotly.js may still be loading (the dashboard loads it async, beside the data): plots wait for it, tables do not.
  var plotlyLoaded = null;
  function whenPlotly() {
    if (global.Plotly) return Promise.resolve();
    if (!plotlyLoaded) {
      plotlyLoaded = new Promise(function (resolve) {
        (function wait() { if (global.Plotly) resolve(); else setTimeout(wait, 20); })();
      });
    }
    return plotlyLoaded;
  }

  function plot(div, data, layout) {
    div.classList.remove('br-pending');  // its room was for before: plotly sizes the plot to the box as it is now
    return whenPlotly().then(function () {
      return div.dataset.drawn ? Plotly.react(div, data, layout, CFG) : Plotly.newPlot(div, data, layout, CFG).then(function () { div.dataset.drawn = '1'; });
    });
  }

  // ---- parallel coordinates (parcoords.js: a 2D canvas, so 10,000 runs draw in milliseconds without a GPU) ----
  Sweep.prototype.draw_parcoords = function () {
    var self = this, div = this.sections.parcoords.body, metric = this.metric;
    var rows = this.filtered(false);
    var metrics = this.doc.metrics.map(function (m) { return m.name; }).filter(function (m) { return m !== metric; }).slice(0, OTHER_METRICS);
    // A parameter some runs lack (a line edited by hand) is left out, rather than those runs.
    var mAt = this.at[metric];
    var valued = rows.filter(function (r) { return isNum(r[mAt]); });
    var names = this.swept().map(function (p) { return p.name; }).concat(metrics).filter(function (n) {
      var at = self.at[n];
      return valued.every(function (r) { return r[at] !== null && r[at] !== undefined; });
    }).concat(metric ? [metric] : []);
    var axes = names.map(function (n) { return self.axisFor(n); });
    var ats = names.map(function (n) { return self.at[n]; });
    var coords = names.map(function () { return []; });
    valued.forEach(function (r) {
      var c = [];
      for (var i = 0; i < names.length; i++) { var v = axes[i].coord(r[ats[i]]); if (v === null) return; c.push(v); }
      for (var j = 0; j < names.length; j++) coords[j].push(c[j]);
    });
    if (!metric || !coords[0] || !coords[0].length) {
      this.pc = null;
      div.textContent = metric ? 'No run has a value of ' + metric + ' yet.' : 'No run reported a metric yet.';
      div.style.height = 'auto';
      return null;
    }
    div.style.height = '';
    if (!this.pc || !div.contains(this.pc.canvas)) {
      this.pc = new global.BatchrunParcoords(div, function (name, range) {
        self.brush[name] = range ? [range] : [];
        self.page = 0;
        delete self.cache.filtered;
        ['table', 'scatters', 'bestsofar', 'history', 'importance', 'groups'].forEach(function (k) { self.dirty[k] = true; });
        self.schedule();
      });
    }
    var dims = names.map(function (n, i) {
      var d = {name: n, label: n + (self.isLog(n) ? ' (log)' : ''), values: coords[i]};
      var t = axes[i].ticks(coords[i]);
      if (t && t.tickvals) { d.tickvals = t.tickvals; d.ticktext = t.ticktext; }
      if (self.brush[n] && self.brush[n].length) d.range = self.brush[n][0];
      return d;
    });
    this.pc.draw({dims: dims, color: coords[names.length - 1], colorTitle: metric + (this.isLog(metric) ? ' (log10)' : ''), reverse: this.doc.goal !== 'max'});
    return null;
  };

  Sweep.prototype.isLog = function (name) {
    var p = this.doc.params.filter(function (q) { return q.name === name; })[0];
    return p ? p.kind === 'log' : this.metricSpec(name).log;
  };

  // ---- the table ---------------------------------------------------------------------------
  Sweep.prototype.tableColumns = function () {
    var cols = ['line', 'job_id', 'state'];
    this.swept().forEach(function (p) { cols.push(p.name); });
    this.doc.metrics.forEach(function (m) { cols.push(m.name); });
    return cols.concat(['runtime', 'command']);
  };

  Sweep.prototype.sorted = function () {
    if (this.cache.sorted) return this.cache.sorted;
    var at = this.at[this.sort.col], desc = this.sort.desc;
    var rows = this.filtered().slice();
    rows.sort(function (a, b) {
      var u = a[at], v = b[at], nu = u === null || u === undefined, nv = v === null || v === undefined;
      if (nu || nv) return nu === nv ? 0 : (nu ? 1 : -1);  // no value: last, either way
      var d = (isNum(u) && isNum(v)) ? u - v : String(u).localeCompare(String(v));
      return desc ? -d : d;
    });
    this.cache.sorted = rows;
    return rows;
  };

  Sweep.prototype.draw_table = function () {
    var self = this, box = this.sections.table.body;
    delete this.cache.sorted;
    var cols = this.tableColumns(), rows = this.sorted();
    var pages = Math.max(1, Math.ceil(rows.length / PAGE));
    this.page = Math.min(this.page, pages - 1);
    var table = el('table', 'br-runs');
    table.id = 'runs';
    var head = el('tr');
    cols.forEach(function (c) {
      var th = el('th', self.sort.col === c ? (self.sort.desc ? 'sorted-desc' : 'sorted-asc') : '', c === 'job_id' ? 'id' : c);
      th.title = 'click to sort';
      th.addEventListener('click', function () {
        self.sort = {col: c, desc: self.sort.col === c ? !self.sort.desc : false};
        self.dirty.table = true;
        self.schedule();
      });
      head.appendChild(th);
    });
    if (this.opts.kill) head.appendChild(el('th', null, ''));
    var thead = el('thead');
    thead.appendChild(head);
    table.appendChild(thead);
    var body = el('tbody');
    // A row whose state is unchanged keeps its element (its cells are refreshed): a kill button asked once keeps asking.
    var colsKey = cols.join('\u0000'), old = this.rowCache && this.rowCache.cols === colsKey ? this.rowCache.rows : {}, fresh = {};
    var jobAt = this.at.job_id, stateAt = this.at.state;
    rows.slice(this.page * PAGE, (this.page + 1) * PAGE).forEach(function (r) {
      var id = r[jobAt], prev = old[id], tr;
      if (prev && prev.state === r[stateAt]) {
        tr = prev.tr;
        if (prev.row !== r) {
          var made = Array.prototype.slice.call(self.rowNode(r, cols).cells);
          for (var i = 0; i < cols.length; i++) tr.replaceChild(made[i], tr.cells[i]);
        }
      } else tr = self.rowNode(r, cols);
      fresh[id] = {tr: tr, state: r[stateAt], row: r};
      body.appendChild(tr);
    });
    this.rowCache = {cols: colsKey, rows: fresh};
    table.appendChild(body);
    var pager = el('div', 'br-pager');
    if (pages > 1) {
      var prev = el('button', null, '\u2190 previous'), next = el('button', null, 'next \u2192');
      prev.disabled = this.page === 0;
      next.disabled = this.page >= pages - 1;
      prev.addEventListener('click', function () { self.page--; self.dirty.table = true; self.schedule(); });
      next.addEventListener('click', function () { self.page++; self.dirty.table = true; self.schedule(); });
      pager.appendChild(prev);
      pager.appendChild(el('span', null, 'page ' + (this.page + 1) + ' of ' + pages));
      pager.appendChild(next);
    }
    pager.appendChild(el('span', 'br-note', rows.length + ' runs' + (rows.length < this.rows.length ? ' (filtered from ' + this.rows.length + ')' : '')));
    box.textContent = '';
    box.appendChild(pager);
    box.appendChild(table);
    return null;
  };

  Sweep.prototype.rowNode = function (r, cols) {
    var self = this, state = r[this.at.state], id = r[this.at.job_id];
    var tr = el('tr', 's-' + state);
    tr.dataset.job = id;
    cols.forEach(function (c) {
      var v = r[self.at[c]], td;
      if (c === 'command') { td = el('td'); td.appendChild(commandNode(v)); }
      else if (c === 'state') td = el('td', 'st', v);
      else if (c === 'runtime') td = el('td', 'num', duration(v));
      else if (c === 'job_id' || c === 'line') {
        td = el('td', c === 'line' ? 'num' : null);
        var text = c === 'job_id' ? String(v).slice(0, 8) : fmt(v);
        var href = self.opts.runLink ? self.opts.runLink(id) : null;
        if (href) { var a = el('a', null, text); a.href = href; td.appendChild(a); } else td.textContent = text;
      } else td = el('td', isNum(v) ? 'num' : null, fmt(v));
      tr.appendChild(td);
    });
    if (this.opts.kill) {
      var td = el('td');
      if (state === 'running') td.appendChild(killButton(function () { return self.opts.kill(id); }));
      tr.appendChild(td);
    }
    return tr;
  };

  // A button that asks once more before it acts (no dialog: it stays in the page).
  function killButton(act, label) {
    var b = el('button', 'danger kill', label || 'kill');
    b.addEventListener('click', function () {
      if (!b.classList.contains('armed')) {
        b.classList.add('armed');
        b.textContent = 'really ' + (label || 'kill') + '?';
        setTimeout(function () { if (b.classList.contains('armed')) { b.classList.remove('armed'); b.textContent = label || 'kill'; } }, 4000);
        return;
      }
      b.disabled = true;
      b.textContent = 'asking\u2026';
      Promise.resolve(act()).then(function (text) { b.textContent = text || 'asked'; }, function (err) { b.textContent = String(err); b.disabled = false; });
    });
    return b;
  }

  // ---- metric against each parameter ---------------------------------------------------------------
  Sweep.prototype.draw_scatters = function () {
    var self = this, box = this.sections.scatters.body, metric = this.metric, params = this.swept();
    var mAt = this.at[metric];
    var rows = this.filtered().filter(function (r) { return isNum(r[mAt]); });
    if (!metric || !params.length || !rows.length) {
      if (box.dataset.drawn) { Plotly.purge(box); delete box.dataset.drawn; }
      box.textContent = !params.length ? 'No parameter varies.' : 'No run has a value of ' + (metric || 'a metric') + ' yet.';
      box.style.height = 'auto';
      return null;
    }
    if (!box.dataset.drawn) box.textContent = '';
    var columns = Math.min(params.length, 3), lines = Math.ceil(params.length / columns);
    box.style.height = (lines * 300 + 40) + 'px';
    var type = rows.length > GL_ABOVE ? 'scattergl' : 'scatter';
    var y = rows.map(function (r) { return r[mAt]; });
    var text = rows.map(function (r) { return 'line ' + r[self.at.line] + ' (' + r[self.at.state] + ')'; });
    var ids = rows.map(function (r) { return r[self.at.job_id]; });
    var layout = {grid: {rows: lines, columns: columns, pattern: 'independent'}, showlegend: false, margin: {l: 60, r: 20, t: 20, b: 50}};
    var data = params.map(function (p, i) {
      var c = cartesian(p, rows.map(function (r) { return r[self.at[p.name]]; }));
      var n = i ? String(i + 1) : '';
      layout['xaxis' + n] = Object.assign({title: {text: esc(p.name) + (p.kind === 'log' ? ' (log)' : '')}, automargin: true}, c.axis);
      layout['yaxis' + n] = Object.assign({title: {text: i % columns ? '' : esc(metric)}}, metricAxis(self.isLog(metric)));
      return {type: type, mode: 'markers', x: c.x, y: y, text: text, customdata: ids, xaxis: 'x' + n, yaxis: 'y' + n,
              hovertemplate: '%{text}<br>%{x}: %{y}<extra></extra>',
              marker: {size: 6, color: y, colorscale: 'Viridis', reversescale: self.doc.goal !== 'max'}};
    });
    return plot(box, data, layout).then(function () {
      if (box.dataset.listening || !self.opts.runLink) return;
      box.dataset.listening = '1';
      box.on('plotly_click', function (ev) {
        var id = ev.points && ev.points[0] && ev.points[0].customdata;
        if (id) global.location.href = self.opts.runLink(id);
      });
    });
  };

  // ---- best so far -------------------------------------------------------------------------------
  Sweep.prototype.draw_bestsofar = function () {
    var self = this, div = this.sections.bestsofar.body, metric = this.metric, mAt = this.at[metric], sAt = this.at.start;
    var rows = this.filtered().filter(function (r) { return isNum(r[mAt]) && isNum(r[sAt]); });
    rows.sort(function (a, b) { return a[sAt] - b[sAt]; });
    if (!rows.length) {
      if (div.dataset.drawn) { Plotly.purge(div); delete div.dataset.drawn; }
      div.textContent = 'No run has a value of ' + (metric || 'a metric') + ' yet.';
      div.style.height = 'auto';
      return null;
    }
    div.style.height = '';
    if (!div.dataset.drawn) div.textContent = '';
    // The best line is drawn at the runs that improved it; beyond GL_ABOVE runs, the points are those runs and an even
    // spread of the others (SVG: a WebGL plot costs a second to start without a GPU, and the cloud reads the same).
    var max = this.doc.goal === 'max', x = [], y = [], text = [], colors = [], bx = [], by = [], best = null;
    var every = Math.max(1, Math.ceil(rows.length / GL_ABOVE));
    rows.forEach(function (r, i) {
      var v = r[mAt], improved = best === null || (max ? v > best : v < best);
      if (improved) { best = v; bx.push(i + 1); by.push(v); }
      if (!improved && i % every) return;
      x.push(i + 1); y.push(v); text.push('line ' + r[self.at.line] + ' (' + r[self.at.state] + ')');
      colors.push(BAD[r[self.at.state]] ? '#c62828' : (r[self.at.state] === 'stopped' ? '#9e9e9e' : '#1f77b4'));
    });
    bx.push(rows.length); by.push(best);
    return plot(div, [
      {type: 'scatter', mode: 'markers', name: every > 1 ? 'runs (1 in ' + every + ', and each new best)' : 'each run', x: x, y: y, text: text, marker: {size: 5, color: colors}},
      {type: 'scatter', mode: 'lines', name: 'best so far', x: bx, y: by, line: {shape: 'hv', color: '#ff7f0e', width: 2}}
    ], {xaxis: {title: {text: 'run order (by start time)'}, tickformat: 'd'}, yaxis: Object.assign({title: {text: esc(metric)}}, metricAxis(this.isLog(metric))),
        margin: {t: 20}, legend: {orientation: 'h'}});
  };

  // ---- history curves ------------------------------------------------------------------------------
  Sweep.prototype.historyIds = function () {
    var self = this, mAt = this.at[this.metric], max = this.doc.goal === 'max', stateAt = this.at.state;
    var valued = this.filtered().filter(function (r) { return isNum(r[mAt]); });
    valued.sort(function (a, b) { return max ? b[mAt] - a[mAt] : a[mAt] - b[mAt]; });
    var ids = valued.slice(0, this.historyRuns).map(function (r) { return r[self.at.job_id]; });
    // Running runs are what a live page watches: add them, a few.
    this.filtered().filter(function (r) { return r[stateAt] === 'running'; }).slice(0, 10).forEach(function (r) {
      if (ids.indexOf(r[self.at.job_id]) < 0) ids.push(r[self.at.job_id]);
    });
    return ids;
  };

  Sweep.prototype.draw_history = function () {
    var self = this, sec = this.sections.history, metric = this.metric;
    if (!sec.controls) {
      sec.controls = el('div', 'br-controls');
      var label = el('label', null, 'smoothing ');
      var slider = el('input');
      slider.type = 'range'; slider.min = 0; slider.max = 0.99; slider.step = 0.01; slider.value = 0; slider.id = 'br-smoothing';
      var shown = el('span', null, '0');
      slider.addEventListener('input', function () { self.smoothing = Number(slider.value); shown.textContent = slider.value; self.dirty.history = true; self.schedule(); });
      label.appendChild(slider); label.appendChild(shown);
      sec.controls.appendChild(label);
      var runs = el('label', null, 'runs ');
      var pick = el('select');
      HISTORY_RUNS.forEach(function (n) { var o = el('option', null, 'best ' + n); o.value = n; pick.appendChild(o); });
      pick.value = this.historyRuns;
      pick.addEventListener('change', function () { self.historyRuns = Number(pick.value); self.dirty.history = true; self.schedule(); });
      runs.appendChild(pick);
      sec.controls.appendChild(runs);
      sec.note = el('span', 'br-note');
      sec.controls.appendChild(sec.note);
      sec.section.insertBefore(sec.controls, sec.body);
      sec.body.className = 'br-plot';
    }
    if (!metric || !this.opts.histories) { sec.body.textContent = 'No metric.'; return null; }
    var ids = this.historyIds();
    return Promise.resolve(this.opts.histories(ids, metric)).then(function (got) {
      var curves = got.curves || {}, stateAt = self.at.state, traces = [], lo = Infinity, hi = -Infinity;
      ids.forEach(function (id) {
        var c = curves[id], r = self.rows[self.index[id]];
        if (!c || !r || !c.x.length) return;
        var state = r[stateAt], y = smooth(c.y, self.smoothing), last = c.x.length - 1;
        lo = Math.min(lo, c.x[0]); hi = Math.max(hi, c.x[last]);
        var name = 'line ' + r[self.at.line] + (state === 'succeeded' ? '' : ' (' + state + ')');
        var symbol = BAD[state] ? 'x' : (state === 'stopped' ? 'square' : (state === 'running' ? 'circle-open' : 'circle'));
        var sizes = c.x.map(function (_, i) { return i === last && state !== 'succeeded' ? 10 : 0; });
        traces.push({type: 'scatter', mode: 'lines+markers', name: esc(name), x: c.x, y: y, customdata: id,
                     line: {width: 1.5, dash: state === 'stopped' ? 'dot' : 'solid'},
                     marker: {symbol: symbol, size: sizes, color: BAD[state] ? '#c62828' : undefined}});
      });
      var asked = Math.min(self.historyRuns, ids.length);
      sec.title.textContent = 'History of ' + metric + ': the ' + asked + ' best runs' +
        (traces.length < ids.length ? ' (' + traces.length + ' logged it more than once)' : '') + ', best first';
      sec.note.textContent = (self.opts.historyNote || '') + ' \u00d7 failed, killed or timed out; \u25a1 and dotted: stopped early; \u25cb running';
      if (!traces.length) {
        if (sec.body.dataset.drawn) { Plotly.purge(sec.body); delete sec.body.dataset.drawn; }
        sec.body.textContent = 'No run of these has a history of ' + metric + ' (more than one logged value).';
        sec.body.style.height = 'auto';
        return null;
      }
      sec.body.style.height = '';
      if (!sec.body.dataset.drawn) sec.body.textContent = '';
      // The x axis spans the curves drawn, nothing more.
      var xaxis = got.xlog ? {title: {text: 'step (log)'}, type: 'log', range: [Math.log10(lo), Math.log10(hi > lo ? hi : lo * 10)], autorange: false}
                           : Object.assign({title: {text: 'step'}, range: [lo, hi > lo ? hi : lo + 1], autorange: false}, stepAxis([lo, hi]));
      return plot(sec.body, traces, {xaxis: xaxis, yaxis: Object.assign({title: {text: esc(metric)}}, metricAxis(got.log)), margin: {t: 20}, hovermode: 'closest'});
    });
  };

  // TensorBoard's exponential moving average, de-biased so the curve starts at its first value.
  function smooth(values, weight) {
    if (!weight) return values;
    var out = [], last = 0, n = 0;
    for (var i = 0; i < values.length; i++) {
      n++;
      last = last * weight + (1 - weight) * values[i];
      out.push(last / (1 - Math.pow(weight, n)));
    }
    return out;
  }

  // ---- parameter importance --------------------------------------------------------------------------
  Sweep.prototype.draw_importance = function () {
    var self = this, box = this.sections.importance.body, metric = this.metric;
    if (!metric || !this.opts.importance) { box.textContent = 'No metric.'; return null; }
    var ended = this.rows.filter(function (r) { return ENDED[r[self.at.state]]; }).length;
    var key = metric + '|' + ended;
    if (this.importanceKey === key) return null;
    this.importanceKey = key;
    return Promise.resolve(this.opts.importance(metric)).then(function (got) {
      if (!got || got.error) {
        if (box.dataset.drawn) { Plotly.purge(box); delete box.dataset.drawn; }
        box.textContent = 'Importance: ' + (got ? got.error : 'not available') + '.';
        box.style.height = 'auto';
        return null;
      }
      box.style.height = Math.max(220, 60 + 34 * got.params.length) + 'px';
      if (!box.dataset.drawn) box.textContent = '';
      var names = got.params.map(function (p) { return esc(p.name); }).reverse();
      var imp = got.params.map(function (p) { return p.importance; }).reverse();
      var cor = got.params.map(function (p) { return p.correlation; }).reverse();
      return plot(box, [
        {type: 'bar', orientation: 'h', y: names, x: imp, name: 'importance', marker: {color: '#1f77b4'}, xaxis: 'x', yaxis: 'y',
         hovertemplate: '%{y}: %{x:.3f}<extra>importance</extra>'},
        {type: 'bar', orientation: 'h', y: names, x: cor, name: 'correlation', xaxis: 'x2', yaxis: 'y2',
         marker: {color: cor.map(function (c) { return c === null ? '#ccc' : (c < 0 ? '#2e7d32' : '#c62828'); })},
         hovertemplate: '%{y}: %{x:.3f}<extra>correlation</extra>'}
      ], {grid: {rows: 1, columns: 2, pattern: 'independent'}, showlegend: false,
          xaxis: {title: {text: 'importance (' + esc(got.method) + ', ' + got.runs + ' runs)'}, range: [0, 1]},
          xaxis2: {title: {text: 'correlation with ' + esc(metric)}, range: [-1, 1]},
          yaxis2: {showticklabels: false}, margin: {l: 120, r: 20, t: 10, b: 50}});
    });
  };

  // ---- groups over a parameter (seeds) ----------------------------------------------------------
  Sweep.prototype.draw_groups = function () {
    var self = this, sec = this.sections.groups, metric = this.metric, params = this.swept();
    if (!params.length || !metric || !this.opts.groups) { sec.body.textContent = 'No parameter varies.'; return null; }
    if (this.over === null || !params.some(function (p) { return p.name === self.over; })) {
      var seed = params.filter(function (p) { return /seed/i.test(p.name); })[0];
      this.over = seed ? seed.name : '';
    }
    if (!sec.controls) {
      sec.controls = el('div', 'br-controls');
      var label = el('label', null, 'mean over ');
      sec.pick = el('select');
      sec.pick.id = 'br-over';
      sec.pick.addEventListener('change', function () { self.over = sec.pick.value; self.dirty.groups = true; self.schedule(); });
      label.appendChild(sec.pick);
      sec.controls.appendChild(label);
      sec.controls.appendChild(el('span', 'br-note', 'each line: the mean of the runs that differ only in this parameter, with \u00b1 one standard deviation shaded'));
      sec.section.insertBefore(sec.controls, sec.body);
      sec.plot = el('div', 'br-plot');
      sec.plot.id = 'groups-plot';
      sec.section.appendChild(sec.plot);
    }
    sec.pick.textContent = '';
    [''].concat(params.map(function (p) { return p.name; })).forEach(function (n) {
      var o = el('option', null, n || '(choose a parameter)'); o.value = n; sec.pick.appendChild(o);
    });
    sec.pick.value = this.over;
    if (!this.over) { sec.body.textContent = 'Choose the parameter that repeats runs (a seed).'; sec.plot.style.display = 'none'; return null; }
    return Promise.resolve(this.opts.groups(this.over, metric)).then(function (got) {
      sec.body.textContent = '';
      if (!got || got.error) { sec.body.textContent = got ? got.error : 'not available'; sec.plot.style.display = 'none'; return null; }
      var table = el('table', 'br-groups');
      var head = el('tr');
      got.params.concat(['runs', metric + ' mean \u00b1 std (n)']).forEach(function (c) { head.appendChild(el('th', null, c)); });
      table.appendChild(head);
      got.groups.slice(0, 20).forEach(function (g) {
        var tr = el('tr');
        got.params.forEach(function (p) { tr.appendChild(el('td', null, fmt(g.params[p]))); });
        tr.appendChild(el('td', null, String(g.runs)));
        tr.appendChild(el('td', null, fmt(g.mean) + ' \u00b1 ' + (g.std === null ? '' : Number(g.std.toPrecision(2))) + ' (' + g.n + ')'));
        table.appendChild(tr);
      });
      sec.body.appendChild(table);
      if (got.groups.length > 20) sec.body.appendChild(el('p', 'br-note', '\u2026 and ' + (got.groups.length - 20) + ' more groups'));
      var traces = [], palette = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
      got.groups.forEach(function (g, i) {
        if (!g.curve || !g.curve.x.length) return;
        var c = g.curve, color = palette[traces.length / 2 % palette.length];
        var name = got.params.map(function (p) { return p + '=' + fmt(g.params[p]); }).join(' ') || 'all';
        var upper = c.mean.map(function (m, k) { return m + c.std[k]; }), lower = c.mean.map(function (m, k) { return m - c.std[k]; });
        traces.push({type: 'scatter', mode: 'lines', x: c.x.concat(c.x.slice().reverse()), y: upper.concat(lower.reverse()), fill: 'toself',
                     fillcolor: color, opacity: 0.18, line: {width: 0}, hoverinfo: 'skip', showlegend: false, legendgroup: 'g' + i});
        traces.push({type: 'scatter', mode: 'lines', x: c.x, y: c.mean, name: esc(name + ' (' + g.n + ' runs)'), line: {color: color, width: 2}, legendgroup: 'g' + i});
      });
      if (!traces.length) { sec.plot.style.display = 'none'; return null; }
      sec.plot.style.display = '';
      var steps = [];
      got.groups.forEach(function (g) { if (g.curve) steps = steps.concat(g.curve.x); });
      return plot(sec.plot, traces, {xaxis: Object.assign({title: {text: 'step'}}, stepAxis(steps)), yaxis: Object.assign({title: {text: esc(metric) + ' (mean over ' + esc(got.over.join(', ')) + ')'}}, metricAxis(got.log)), margin: {t: 20}});
    });
  };

  global.BatchrunSweep = {
    create: function (root, options) { var view = new Sweep(root, options); global.batchrunSweep = view; return view; },
    esc: esc, fmt: fmt, duration: duration, el: el, commandNode: commandNode, cartesian: cartesian, metricAxis: metricAxis, stepAxis: stepAxis,
    killButton: killButton, smooth: smooth, isNum: isNum, STATES: STATES, BAD: BAD, CFG: CFG, plot: plot
  };
})(window);
