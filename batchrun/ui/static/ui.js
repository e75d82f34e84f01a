/* batchrun ui: the overview, sweep, run and comparison pages.
 *
 * The body's data-* attributes say which page this is (the server writes
 * them); every request carries the token in the X-Batchrun-Token header.
 * A sweep page long-polls /api/sweep/ID?since=VERSION: the server answers
 * when a reading of the runs directory brings a new version, with the rows
 * changed since (sweep.js folds them in). Everything shown is set as text.
 */
(function () {
  'use strict';
  var body = document.body, token = body.dataset.token, page = body.dataset.page;
  var app = document.getElementById('app');
  var S = window.BatchrunSweep || {};
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }
  function link(href, text) { var a = el('a', null, text); a.href = href; return a; }
  function url(path) { return path + (path.indexOf('?') < 0 ? '?' : '&') + 'token=' + encodeURIComponent(token); }
  function get(path) {
    return fetch(path, {headers: {'X-Batchrun-Token': token}, cache: 'no-store'}).then(function (r) {
      return r.json().then(function (doc) { if (!r.ok) throw new Error(doc.error || r.statusText); return doc; });
    });
  }
  function post(path, doc) {
    return fetch(path, {method: 'POST', headers: {'X-Batchrun-Token': token, 'Content-Type': 'application/json'}, body: JSON.stringify(doc)})
      .then(function (r) { return r.json().then(function (d) { if (!r.ok) throw new Error(d.error || r.statusText); return d; }); });
  }
  function clock(t) { return t ? new Date(t * 1000).toLocaleString() : ''; }
  function ago(t) {
    if (!t) return '';
    var s = Math.max(0, Date.now() / 1000 - t);
    if (s < 60) return Math.round(s) + ' s ago';
    if (s < 3600) return Math.round(s / 60) + ' min ago';
    if (s < 86400) return (s / 3600).toFixed(1) + ' h ago';
    return Math.round(s / 86400) + ' days ago';
  }
  function countsNode(counts) {
    var span = el('span', 'counts');
    (S.STATES || Object.keys(counts)).forEach(function (s) { if (counts[s]) span.appendChild(el('span', 'st s-' + s, counts[s] + ' ' + s)); });
    return span;
  }
  function launchNode(launch) {
    if (!launch || !launch.running) return el('span', 'br-note', 'no launch running');
    return el('span', 'launch-on', 'launch running: pid ' + launch.pid + (launch.since ? ', since ' + clock(launch.since) : ''));
  }
  function banner(text) {
    var b = document.getElementById('banner');
    if (!b) { b = el('div', 'banner'); b.id = 'banner'; document.body.insertBefore(b, document.body.firstChild); }
    b.textContent = text;
    b.style.display = text ? '' : 'none';
  }
  function ready() { window.batchrunReady = true; }

  // ---- overview: every runs directory ------------------------------------------------------
  function overview() {
    document.title = 'batchrun ui';
    app.textContent = '';
    app.appendChild(el('h1', null, 'batchrun ui'));
    var root = el('p', 'br-note');
    app.appendChild(root);
    var box = el('div');
    app.appendChild(box);
    var compare = el('div', 'br-controls');
    compare.id = 'compare-form';
    app.appendChild(compare);
    var chosen = {a: '', b: ''}, shown = null, listed = null;
    function draw(doc) {
      // Redrawn only when something changed: a link clicked as it is replaced would be lost.
      var key = JSON.stringify(doc);
      if (key === shown) return;
      shown = key;
      root.textContent = 'runs directories under ' + doc.root;
      var table = el('table', 'br-runs overview');
      table.id = 'sweeps';
      var head = el('tr');
      ['sweep', 'runs directory', 'runs', 'states', 'launch', 'last activity'].forEach(function (h) { head.appendChild(el('th', null, h)); });
      table.appendChild(head);
      doc.sweeps.forEach(function (s) {
        var tr = el('tr');
        tr.dataset.sweep = s.sid;
        var name = el('td');
        name.appendChild(link(url('/sweep/' + s.sid), s.title));
        tr.appendChild(name);
        tr.appendChild(el('td', 'br-note', s.path));
        tr.appendChild(el('td', 'num', String(s.total)));
        var st = el('td');
        st.appendChild(s.error ? el('span', 'st s-failed', s.error) : countsNode(s.counts));
        tr.appendChild(st);
        var la = el('td');
        la.appendChild(launchNode(s.launch));
        tr.appendChild(la);
        var act = el('td', null, ago(s.last_activity));
        act.title = clock(s.last_activity);
        tr.appendChild(act);
        table.appendChild(tr);
      });
      box.textContent = '';
      if (!doc.sweeps.length) box.appendChild(el('p', null, 'No runs directory under this folder yet (looking again every few seconds).'));
      else box.appendChild(table);
      var ids = JSON.stringify(doc.sweeps.map(function (s) { return [s.sid, s.title, s.path]; }));
      if (ids === listed) return;
      listed = ids;
      compare.textContent = '';
      if (doc.sweeps.length < 2) return;
      compare.appendChild(el('span', null, 'compare two sweeps:'));
      ['a', 'b'].forEach(function (k) {
        var sel = el('select');
        sel.id = 'compare-' + k;
        doc.sweeps.forEach(function (s) { var o = el('option', null, s.title + ' (' + s.path + ')'); o.value = s.sid; sel.appendChild(o); });
        if (!chosen[k]) chosen[k] = doc.sweeps[k === 'a' ? 0 : 1].sid;
        sel.value = chosen[k];
        sel.addEventListener('change', function () { chosen[k] = sel.value; go.href = url('/compare?a=' + chosen.a + '&b=' + chosen.b); });
        compare.appendChild(sel);
      });
      var go = link(url('/compare?a=' + chosen.a + '&b=' + chosen.b), 'compare \u2192');
      go.id = 'compare-go';
      compare.appendChild(go);
    }
    function loop() {
      get('/api/overview').then(function (doc) { banner(''); draw(doc); ready(); }, function (err) { banner('cannot reach the server: ' + err.message); })
        .then(function () { setTimeout(loop, 2000); });
    }
    loop();
  }

  // ---- a sweep, live ---------------------------------------------------------------------------
  // Keeps one sweep's document up to date by long polling; calls onChange(doc, diff) for each change.
  function Feed(sid, onChange) {
    var version = 0, doc = null, stopped = false;
    function loop() {
      if (stopped) return;
      get('/api/sweep/' + sid + '?since=' + version + '&wait=20').then(function (d) {
        banner(d.error ? d.error : '');
        if (d.version === version && !d.full) return;
        if (d.full || !doc) doc = d;
        else {
          var at = doc.columns.indexOf('job_id'), index = {};
          doc.rows.forEach(function (r, i) { index[r[at]] = i; });
          d.rows.forEach(function (r) { if (r[at] in index) doc.rows[index[r[at]]] = r; else doc.rows.push(r); });
          if (d.removed.length) { var gone = new Set(d.removed); doc.rows = doc.rows.filter(function (r) { return !gone.has(r[at]); }); }
          ['counts', 'launch', 'params', 'metrics', 'title', 'metric', 'goal', 'sampled'].forEach(function (k) { if (k in d) doc[k] = d[k]; });
        }
        version = d.version;
        onChange(doc, d);
      }).then(function () { setTimeout(loop, 50); }, function (err) {
        banner('cannot reach the server (' + err.message + '); trying again');
        setTimeout(loop, 2000);
      });
    }
    loop();
    return {stop: function () { stopped = true; }};
  }

  function sweepOptions(sid) {
    var base = '/api/sweep/' + sid;
    return {
      lazy: true,
      histories: function (ids, metric) { return get(base + '/histories?metric=' + encodeURIComponent(metric) + '&jobs=' + ids.join(',')); },
      importance: function (metric) { return get(base + '/importance?metric=' + encodeURIComponent(metric)); },
      groups: function (over, metric) { return get(base + '/groups?over=' + encodeURIComponent(over) + '&metric=' + encodeURIComponent(metric)); },
      runLink: function (jobId) { return url('/run/' + sid + '/' + jobId); },
      kill: function (jobId) {
        return post(base + '/kill', {job_id: jobId}).then(function (a) { return a.killing.length ? 'killing' : 'not running'; });
      }
    };
  }

  function sweep() {
    var sid = body.dataset.sweep;
    app.textContent = '';
    var nav = el('p');
    nav.appendChild(link(url('/'), '\u2190 all runs directories'));
    app.appendChild(nav);
    var title = el('h1');
    app.appendChild(title);
    var path = el('p', 'br-note');
    app.appendChild(path);
    var launch = el('div', 'launch');
    launch.id = 'launch';
    app.appendChild(launch);
    var sampled = el('p', 'br-note sampled');
    sampled.id = 'sampled';
    app.appendChild(sampled);
    var root = el('div');
    root.id = 'sweep';
    app.appendChild(root);
    var view = S.create(root, sweepOptions(sid)), launchKey = null;
    Feed(sid, function (doc, diff) {
      document.title = doc.title + ' \u2013 batchrun ui';
      title.textContent = doc.title;
      path.textContent = doc.path;
      // A long runfile is shown by a sample of its runs (the server says which); the counts are of all of them.
      var part = doc.sampled;
      sampled.textContent = part ? 'This sweep has ' + part.total.toLocaleString('en') + ' runs: too many for one page. The table and plots show ' +
        part.shown.toLocaleString('en') + ' of them: one in every ' + part.every + ' in runfile order, and the best of each metric. ' +
        'The counts are of all runs; batchrun results lists every one.' : '';
      var key = JSON.stringify(doc.launch);
      if (key !== launchKey) {
        launchKey = key;
        launch.textContent = '';
        launch.appendChild(launchNode(doc.launch));
        if (doc.launch && doc.launch.running) {
          launch.appendChild(S.killButton(function () { return post('/api/sweep/' + sid + '/stop', {now: false}).then(function () { return 'stopping: no new job starts'; }); }, 'stop the launch'));
          launch.appendChild(S.killButton(function () { return post('/api/sweep/' + sid + '/stop', {now: true}).then(function () { return 'stopping its jobs too'; }); }, 'stop it now (as Ctrl-C)'));
        }
      }
      if (diff.full) view.setDoc(doc);
      else view.applyDiff(diff);
    });
  }

  // ---- one run ------------------------------------------------------------------------------------
  function run() {
    var sid = body.dataset.sweep, job = body.dataset.job, base = '/api/sweep/' + sid;
    app.textContent = '';
    var nav = el('p'), head = el('div'), info = el('div', 'run-info'), plots = el('div'), logs = el('div', 'logs');
    app.appendChild(nav); app.appendChild(head); app.appendChild(info); app.appendChild(plots); app.appendChild(logs);
    var tails = {};
    ['out', 'err'].forEach(function (name) {
      var h = el('h2', null, name + '.log');
      var pre = el('pre', 'log');
      pre.id = name + '-log';
      logs.appendChild(h); logs.appendChild(pre);
      tails[name] = {pre: pre, offset: -1};
    });
    var lastKey = null, curvesKey = null;
    function kv(title, pairs) {
      var box = el('div', 'kv');
      box.appendChild(el('h2', null, title));
      var t = el('table', 'br-runs');
      pairs.forEach(function (p) { var tr = el('tr'); tr.appendChild(el('th', null, p[0])); tr.appendChild(el('td', S.isNum(p[1]) ? 'num' : null, p[1] === null || p[1] === undefined ? '' : (typeof p[1] === 'object' ? JSON.stringify(p[1]) : S.fmt(p[1])))); t.appendChild(tr); });
      box.appendChild(t);
      return box;
    }
    function draw(r) {
      document.title = 'line ' + r.line + ' of ' + r.title + ' \u2013 batchrun ui';
      nav.textContent = '';
      nav.appendChild(link(url('/sweep/' + sid), '\u2190 ' + r.title));
      head.textContent = '';
      var h1 = el('h1', null, 'line ' + (r.line === null ? '?' : r.line) + ' \u00b7 ' + r.job_id + ' ');
      h1.appendChild(el('span', 'st s-' + r.state, r.state));
      head.appendChild(h1);
      if (r.state === 'running' && r.launch && r.launch.running) {
        head.appendChild(S.killButton(function () { return post(base + '/kill', {job_id: r.job_id}).then(function (a) { return a.killing.length ? 'killing' : 'not running'; }); }));
      }
      var cmd = el('p');
      cmd.appendChild(S.commandNode(r.command));
      head.appendChild(cmd);
      info.textContent = '';
      info.appendChild(kv('Parameters', Object.keys(r.parameters).map(function (k) { return [k, r.parameters[k]]; })));
      var m = kv('Metrics (last, min, max, values logged)', []);
      var mt = m.querySelector('table');
      r.metrics.forEach(function (x) {
        var tr = el('tr');
        tr.appendChild(el('th', null, x.name));
        [x.value, x.min, x.max, x.count].forEach(function (v) { tr.appendChild(el('td', 'num', S.fmt(v))); });
        mt.appendChild(tr);
      });
      info.appendChild(m);
      var rec = r.record;
      info.appendChild(kv('Record', [['state', r.state], ['exit status', rec.status], ['exit codes', rec.exit_codes], ['attempts', rec.attempts],
        ['started', clock(rec.start)], ['ended', clock(rec.end)], ['runtime', S.duration(S.isNum(rec.runtime) ? rec.runtime : (r.state === 'running' && rec.start ? Date.now() / 1000 - rec.start : null))], ['host', rec.host], ['slot', rec.slot], ['log dir', rec.log_dir]]));
      var res = Object.keys(r.resources);
      if (res.length) info.appendChild(kv('Resources', res.map(function (k) { return [k, r.resources[k]]; })));
      var ck = JSON.stringify(r.curves);
      if (ck !== curvesKey) {
        curvesKey = ck;
        var names = Object.keys(r.curves);
        if (!names.length) { plots.textContent = ''; return; }
        var columns = Math.min(names.length, 3), lines = Math.ceil(names.length / columns);
        var div = plots.firstChild || plots.appendChild(el('div', 'br-plot'));
        div.id = 'run-curves';
        div.style.height = (lines * 260 + 40) + 'px';
        var layout = {grid: {rows: lines, columns: columns, pattern: 'independent'}, showlegend: false, margin: {t: 30, l: 60, r: 20, b: 40}, annotations: []};
        var data = names.map(function (n, i) {
          var k = i ? String(i + 1) : '';
          layout['yaxis' + k] = {title: {text: S.esc(n)}};
          layout['xaxis' + k] = Object.assign({title: {text: 'step'}}, S.stepAxis(r.curves[n].x));
          return {type: 'scatter', mode: 'lines', x: r.curves[n].x, y: r.curves[n].y, name: S.esc(n), xaxis: 'x' + k, yaxis: 'y' + k};
        });
        return S.plot(div, data, layout);
      }
    }
    function poll() {
      get(base + '/run/' + job).then(function (r) {
        banner('');
        var key = JSON.stringify(r);
        if (key !== lastKey) { lastKey = key; return Promise.resolve(draw(r)).then(function () { return r; }); }
        return r;
      }).then(function (r) {
        return Promise.all(['out', 'err'].map(function (name) { return tail(name); })).then(function () { ready(); return r; });
      }).then(function () { setTimeout(poll, 1000); }, function (err) { banner('cannot reach the server: ' + err.message); setTimeout(poll, 2000); });
    }
    function tail(name) {
      var t = tails[name];
      return get(base + '/log/' + job + '?name=' + name + '&offset=' + t.offset).then(function (d) {
        if (t.offset < 0) t.pre.textContent = (d.skipped ? '\u2026 (the start is cut; the file is ' + d.size + ' bytes)\n' : '') + d.text;
        else if (d.text) t.pre.appendChild(document.createTextNode(d.text));
        if (d.missing && t.offset < 0) t.pre.textContent = '(no ' + name + '.log yet)';
        var atEnd = t.pre.scrollTop + t.pre.clientHeight >= t.pre.scrollHeight - 20;
        t.offset = d.offset;
        if (atEnd) t.pre.scrollTop = t.pre.scrollHeight;
      });
    }
    poll();
  }

  // ---- two sweeps side by side -----------------------------------------------------------------------
  function compare() {
    var ids = [body.dataset.a, body.dataset.b];
    app.textContent = '';
    var nav = el('p');
    nav.appendChild(link(url('/'), '\u2190 all runs directories'));
    app.appendChild(nav);
    var h1 = el('h1', null, 'Comparison');
    app.appendChild(h1);
    var controls = el('div', 'br-controls');
    app.appendChild(controls);
    var summary = el('div');
    app.appendChild(summary);
    var sections = {};
    [['best', 'Best so far, in run order'], ['spread', 'Distribution of the metric'], ['params', 'Metric against each parameter both sweeps share'],
     ['curves', 'History of the 5 best runs of each']].forEach(function (p) {
      app.appendChild(el('h2', null, p[1]));
      var d = el('div', 'br-plot');
      d.id = 'compare-' + p[0];
      app.appendChild(d);
      sections[p[0]] = d;
    });
    var docs = [null, null], metric = null, colors = ['#1f77b4', '#d62728'], pending = null, select = null;
    function rows(doc, name) {
      var at = doc.columns.indexOf(name), s = doc.columns.indexOf('start');
      return doc.rows.filter(function (r) { return S.isNum(r[at]); }).map(function (r) { return {v: r[at], start: r[s], r: r}; });
    }
    function metricLog(name) { return docs.some(function (d) { return d.metrics.some(function (m) { return m.name === name && m.log; }); }); }
    function draw() {
      pending = null;
      if (!docs[0] || !docs[1]) return;
      var common = docs[0].metrics.map(function (m) { return m.name; }).filter(function (n) { return docs[1].columns.indexOf(n) >= 0; });
      h1.textContent = 'Comparison: ' + docs[0].title + ' and ' + docs[1].title;
      if (!select) {
        select = el('select');
        select.id = 'compare-metric';
        select.addEventListener('change', function () { metric = select.value; draw(); });
        var label = el('label', null, 'metric ');
        label.appendChild(select);
        controls.appendChild(label);
      }
      select.textContent = '';
      common.forEach(function (n) { var o = el('option', null, n); o.value = n; select.appendChild(o); });
      if (!metric || common.indexOf(metric) < 0) metric = common.indexOf(docs[0].metric) >= 0 ? docs[0].metric : common[0];
      if (!metric) { summary.textContent = 'The two sweeps share no metric.'; return ready(); }
      select.value = metric;
      var goalMax = docs[0].metric === metric ? docs[0].goal === 'max' : false, log = metricLog(metric);
      var yaxis = Object.assign({title: {text: S.esc(metric)}}, S.metricAxis(log));
      var table = el('table', 'br-runs');
      var head = el('tr');
      ['sweep', 'runs', 'states', 'with ' + metric, 'best', 'median', 'best run\u2019s parameters'].forEach(function (h) { head.appendChild(el('th', null, h)); });
      table.appendChild(head);
      var best = [], spread = [], curveIds = [];
      docs.forEach(function (doc, i) {
        var rs = rows(doc, metric).sort(function (a, b) { return a.start - b.start; });
        var values = rs.map(function (x) { return x.v; }), sortedV = values.slice().sort(function (a, b) { return a - b; });
        var b = null, trace = [];
        rs.forEach(function (x) { b = b === null ? x.v : (goalMax ? Math.max(b, x.v) : Math.min(b, x.v)); trace.push(b); });
        var top = rs.slice().sort(function (a, c) { return goalMax ? c.v - a.v : a.v - c.v; });
        var swept = doc.params.filter(function (p) { return p.kind !== 'constant'; });
        var tr = el('tr');
        var name = el('td');
        name.appendChild(link(url('/sweep/' + ids[i]), doc.title));
        tr.appendChild(name);
        tr.appendChild(el('td', 'num', String(doc.rows.length)));
        var st = el('td'); st.appendChild(countsNode(doc.counts)); tr.appendChild(st);
        tr.appendChild(el('td', 'num', String(values.length)));
        tr.appendChild(el('td', 'num', top.length ? S.fmt(top[0].v) : ''));
        tr.appendChild(el('td', 'num', sortedV.length ? S.fmt(sortedV[Math.floor(sortedV.length / 2)]) : ''));
        tr.appendChild(el('td', null, top.length ? swept.map(function (p) { return p.name + '=' + S.fmt(top[0].r[doc.columns.indexOf(p.name)]); }).join(', ') : ''));
        table.appendChild(tr);
        var label = S.esc(doc.title + ' (' + String.fromCharCode(65 + i) + ')');
        best.push({type: 'scatter', mode: 'lines', line: {shape: 'hv', color: colors[i]}, name: label, x: trace.map(function (_, k) { return k + 1; }), y: trace});
        spread.push({type: 'box', name: label, y: values, boxpoints: 'all', jitter: 0.4, pointpos: 0, marker: {color: colors[i], size: 4}});
        curveIds.push(top.slice(0, 5).map(function (x) { return x.r[doc.columns.indexOf('job_id')]; }));
      });
      summary.textContent = '';
      summary.appendChild(table);
      var jobs = [];
      S.plot(sections.best, best, {xaxis: {title: {text: 'run order (by start time)'}}, yaxis: yaxis, margin: {t: 20}}).then(function () { jobs.push(1); });
      S.plot(sections.spread, spread, {yaxis: yaxis, margin: {t: 20}, showlegend: false});
      var shared = docs[0].params.filter(function (p) { return p.kind !== 'constant' && docs[1].params.some(function (q) { return q.name === p.name && q.kind !== 'constant'; }); });
      if (shared.length) {
        var columns = Math.min(shared.length, 3), lines = Math.ceil(shared.length / columns);
        sections.params.style.height = (lines * 300 + 40) + 'px';
        var layout = {grid: {rows: lines, columns: columns, pattern: 'independent'}, margin: {t: 20, l: 60}, showlegend: true};
        var data = [];
        shared.forEach(function (p, j) {
          var k = j ? String(j + 1) : '';
          var spec = p.kind === 'category' ? {kind: 'category', categories: Array.from(new Set(p.categories.concat((docs[1].params.filter(function (q) { return q.name === p.name; })[0].categories || [])))).sort()} : p;
          docs.forEach(function (doc, i) {
            var rs = rows(doc, metric), pat = doc.columns.indexOf(p.name);
            var c = S.cartesian(spec, rs.map(function (x) { return x.r[pat]; }));
            layout['xaxis' + k] = Object.assign({title: {text: S.esc(p.name)}}, c.axis);
            layout['yaxis' + k] = Object.assign({title: {text: j % columns ? '' : S.esc(metric)}}, S.metricAxis(log));
            data.push({type: rs.length > 2000 ? 'scattergl' : 'scatter', mode: 'markers', x: c.x, y: rs.map(function (x) { return x.v; }), xaxis: 'x' + k, yaxis: 'y' + k,
                       name: S.esc(doc.title + ' (' + String.fromCharCode(65 + i) + ')'), legendgroup: 's' + i, showlegend: j === 0, marker: {color: colors[i], size: 5, opacity: 0.7}});
          });
        });
        S.plot(sections.params, data, layout);
      } else {
        sections.params.textContent = 'The two sweeps share no varying parameter.';
        sections.params.style.height = 'auto';
      }
      Promise.all(docs.map(function (doc, i) {
        return get('/api/sweep/' + ids[i] + '/histories?metric=' + encodeURIComponent(metric) + '&jobs=' + curveIds[i].join(','));
      })).then(function (got) {
        var traces = [];
        got.forEach(function (g, i) {
          curveIds[i].forEach(function (id, n) {
            var c = g.curves[id];
            if (c) traces.push({type: 'scatter', mode: 'lines', x: c.x, y: c.y, line: {color: colors[i], width: 1.5}, opacity: 1 - n * 0.15,
                                name: S.esc(docs[i].title + ' #' + (n + 1)), legendgroup: 'c' + i});
          });
        });
        var steps = [];
        traces.forEach(function (t) { steps = steps.concat(t.x); });
        return S.plot(sections.curves, traces, {xaxis: Object.assign({title: {text: 'step'}}, S.stepAxis(steps)), yaxis: Object.assign({title: {text: S.esc(metric)}}, S.metricAxis(got.some(function (g) { return g.log; }))), margin: {t: 20}});
      }).then(ready, ready);
    }
    ids.forEach(function (sid, i) {
      Feed(sid, function (doc) {
        docs[i] = doc;
        if (!pending) pending = setTimeout(draw, docs[0] && docs[1] ? 500 : 0);
      });
    });
  }

  if (page === 'sweep') sweep();
  else if (page === 'run') run();
  else if (page === 'compare') compare();
  else overview();
})();
