"""The what-if page's script, inlined into the HTML (no network, no library).

It mirrors the Python definitions term by term, so the page shows the numbers fp computes:
  rates (one p1, or the simulator's problems): pass@k = 1 - (1 - p)^k
      (fp.predict_post_rl writes it -expm1(k log1p(-p)), fp.simulate (1 - p)**k: the same value);
  counts (a screen's report): pass@k = 1 - exp(sum_{j<k} log1p(-c/(n-j))) for k <= n (fp.pass_at_k),
      the plug-in 1 - (1 - c/n)^k beyond n (fastpass.fate);
  per problem p1 -> p1 + gamma * (pass@K - p1); aggregate pass@1 + gamma * (pass@K - pass@1);
  verdict: fp.verdict's rule: for one p1 or the simulator (rates, no counts) the seed's GO/SKIP on
      {1: pass@1, K: pass@K}; for a run's counts fp.verdict(curve, gamma, K_train=K) with its
      INCONCLUSIVE rule, resampling problems with fp's own bootstrap weights (embedded)."""

JS = r"""
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("fp-data").textContent);
  var KMAX = D.axis.kmax;
  var $ = function (id) { return document.getElementById(id); };
  var state = {mode: null, p1: D.defaults.p1, K: D.defaults.K, gamma: D.defaults.gamma};

  function rateAt(p, k, form) {
    if (form === "pow") return 1 - Math.pow(1 - p, k);
    if (p >= 1) return 1;
    return -Math.expm1(k * Math.log1p(-p));
  }

  // ---- eval sets -------------------------------------------------------------------------
  function ratesSet(p, form, label) {
    var P = p.length, p1 = new Float64Array(p);
    return {P: P, p1: p1, form: form, label: label, counts: false, nmin: Infinity,
            c: null, passk: function (i, k) { return rateAt(p1[i], k, form); }};
  }
  function countsSet(s) {
    var P = s.n.length, p1 = new Float64Array(P), logMiss = new Array(P), nmin = Infinity;
    for (var i = 0; i < P; i++) {
      var n = s.n[i], c = s.c[i], L = Math.min(n, KMAX), arr = new Float64Array(L), acc = 0;
      p1[i] = c / n;
      nmin = Math.min(nmin, n);
      for (var j = 0; j < L; j++) {
        acc += (n - c - j > 0) ? Math.log1p(-c / (n - j)) : -Infinity;
        arr[j] = acc;
      }
      logMiss[i] = arr;
    }
    return {P: P, p1: p1, form: "expm1", label: s.label, counts: true, nmin: nmin, c: s.c, n: s.n, boot: s.boot,
            passk: function (i, k) {
              return k <= s.n[i] ? 0 - Math.expm1(logMiss[i][k - 1]) : rateAt(p1[i], k, "expm1");
            }};
  }
  var SETS = {};
  Object.keys(D.sets).forEach(function (name) {
    var s = D.sets[name];
    SETS[name] = s.kind === "counts" ? countsSet(s) : ratesSet(s.p, s.form, s.label);
  });
  function activeSet() {
    if (state.mode === "single") return ratesSet([state.p1], "expm1", "one p1 for every problem");
    return SETS[state.mode];
  }

  // ---- the numbers -----------------------------------------------------------------------
  function decide(lift) { return lift >= D.defaults.min_lift ? "GO" : "SKIP"; }

  // numpy.quantile's default ("linear"), including its two-sided lerp
  function quantile(sorted, q) {
    var pos = (sorted.length - 1) * q, i = Math.floor(pos), t = pos - i;
    if (i + 1 >= sorted.length) return sorted[sorted.length - 1];
    var a = sorted[i], b = sorted[i + 1], d = b - a;
    return t >= 0.5 ? b - d * (1 - t) : a + d * t;
  }
  function bootWeights(S) {  // [n_boot][P] resampling counts: fp's own (embedded) or the page's
    if (S.weights) return S.weights;
    var B = S.boot, P = S.P, w = [];
    if (B.weights_b64) {
      var raw = atob(B.weights_b64);
      for (var b = 0; b < B.n_boot; b++) {
        var row = new Uint8Array(P);
        for (var i = 0; i < P; i++) row[i] = raw.charCodeAt(b * P + i);
        w.push(row);
      }
    } else {  // too many problems to embed fp's weights: a seeded resampling of our own
      var x = 0x9e3779b9;
      var rnd = function () { x |= 0; x = x + 0x6D2B79F5 | 0; var t = Math.imul(x ^ x >>> 15, 1 | x);
        t = t + Math.imul(t ^ t >>> 7, 61 | t) ^ t; return ((t ^ t >>> 14) >>> 0) / 4294967296; };
      for (var b2 = 0; b2 < B.n_boot; b2++) {
        var r2 = new Uint16Array(P);
        for (var j = 0; j < P; j++) r2[Math.floor(rnd() * P)] += 1;
        w.push(r2);
      }
    }
    S.weights = w;
    return w;
  }
  // fp.verdict's INCONCLUSIVE rule for a curve with per-problem counts (fastpass/verdict.py)
  function uncertainty(S, gaps, gap, g) {
    var B = S.boot, band = D.defaults.gamma_band, minLift = D.defaults.min_lift, reasons = [];
    var w = bootWeights(S), means = new Float64Array(w.length);
    for (var b = 0; b < w.length; b++) {
      var s = 0, row = w[b];
      for (var i = 0; i < S.P; i++) s += row[i] * gaps[i];
      means[b] = s / S.P;
    }
    var sorted = Array.prototype.slice.call(means).sort(function (a, b) { return a - b; });
    var tail = (1 - B.level) / 2;
    var gLo = Math.min(quantile(sorted, tail), gap), gHi = Math.max(quantile(sorted, 1 - tail), gap);
    var gamLo = Math.min(g, band[0]), gamHi = Math.max(g, band[1]);
    var liftLo = gamLo * gLo, liftHi = gamHi * gHi, solved = 0;
    for (var k = 0; k < S.P; k++) if (S.c[k] > 0) solved++;
    if (solved < B.min_solved)
      reasons.push("only " + solved + " of " + S.P + " problems solved at least once (needs ≥ " + B.min_solved + ")");
    if (liftLo < minLift && minLift <= liftHi)
      reasons.push(Math.round(100 * B.level) + "% interval of the lift [" + liftLo.toFixed(3) + ", " +
                   liftHi.toFixed(3) + "] contains min_lift " + minLift);
    var decision = reasons.length ? "INCONCLUSIVE" : (liftLo >= minLift ? "GO" : "SKIP");
    return {decision: decision, liftLo: liftLo, liftHi: liftHi, reasons: reasons, solved: solved};
  }

  function compute() {
    var S = activeSet(), K = state.K, g = state.gamma, band = D.defaults.gamma_band, reach = D.defaults.reach;
    var sp1 = 0, spK = 0, q = new Float64Array(S.P), qlo = new Float64Array(S.P), qhi = new Float64Array(S.P);
    var gaps = new Float64Array(S.P);
    var bands = {"within reach": [0, 0], "hard": [0, 0], "easy": [0, 0], "wall": [0, 0]};
    for (var i = 0; i < S.P; i++) {
      var p = S.p1[i], pk = S.passk(i, K), gap = Math.max(pk - p, 0);
      gaps[i] = pk - p;
      q[i] = p + g * gap; qlo[i] = p + band[0] * gap; qhi[i] = p + band[1] * gap;
      sp1 += p; spK += pk;
      var never = S.counts ? S.c[i] === 0 : p === 0;
      var b = never ? "wall" : (p > reach[1] ? "easy" : (p >= reach[0] ? "within reach" : "hard"));
      bands[b][0] += 1; bands[b][1] += g * gap;
    }
    var pass1 = sp1 / S.P, passK = spK / S.P;
    // fp.verdict on {1: pass@1, K: pass@K}: Kmax is the k with the largest pass@k (ties: larger k)
    var kmax = passK >= pass1 ? K : 1, gapAgg = (kmax === 1) ? 0 : passK - pass1;
    var lift = g * gapAgg, rule = decide(lift);
    var unc = S.counts ? uncertainty(S, gaps, gapAgg, g) : null;
    return {rule: rule, unc: unc, S: S, K: K, gamma: g, q: q, qlo: qlo, qhi: qhi, pass1: pass1, passK: passK, gap: gapAgg,
            lift: lift, after: pass1 + lift, afterLow: pass1 + band[0] * gapAgg,
            afterHigh: pass1 + band[1] * gapAgg, liftPP: 100 * lift, cost: 100 * lift * D.defaults.cost_per_pp,
            decision: unc ? unc.decision : rule, bands: bands,
            afterK: meanRate(q, K, S.form), extrapolated: S.counts && K > S.nmin};
  }
  function meanRate(q, k, form) {
    var s = 0;
    for (var i = 0; i < q.length; i++) s += rateAt(q[i], k, form);
    return s / q.length;
  }

  // ---- output ----------------------------------------------------------------------------
  function fmt(v, digits) {
    if (Math.abs(v) > 0 && Math.abs(v) < 0.01) return v.toFixed(4);
    return v.toFixed(digits === undefined ? 3 : digits);
  }
  function put(id, value, text) {
    var el = $(id);
    el.textContent = text;
    el.setAttribute("data-value", String(value));
  }
  function render() {
    var r = compute(), S = r.S;
    $("p1").disabled = state.mode !== "single";
    put("p1-label", state.mode === "single" ? state.p1 : r.pass1,
        state.mode === "single" ? fmt(state.p1) : S.label + " (mean " + fmt(r.pass1) + ")");
    put("K-label", r.K, String(r.K));
    put("gamma-label", r.gamma, r.gamma.toFixed(2));
    put("out-pass1", r.pass1, fmt(r.pass1));
    put("out-passK", r.passK, fmt(r.passK));
    $("out-passK-name").textContent = "pass@" + r.K + " base" + (r.extrapolated ? " (†)" : "");
    put("out-gap", r.gap, fmt(r.gap));
    put("out-lift", r.lift, (r.lift >= 0 ? "+" : "") + fmt(r.lift));
    put("out-after", r.after, fmt(r.after));
    put("out-after-band", r.afterLow + "," + r.afterHigh, fmt(r.afterLow) + " – " + fmt(r.afterHigh));
    put("out-afterK", r.afterK, fmt(r.afterK));
    $("out-afterK-name").textContent = "pass@" + r.K + " after RL";
    put("out-verdict", r.decision, r.decision);
    $("out-verdict").className = "verdict " + r.decision.toLowerCase();
    var why = r.unc ? (r.unc.reasons.length ? r.unc.reasons.join("; ") + " — the seed's rule alone says " + r.rule
                                             : "lift interval [" + r.unc.liftLo.toFixed(3) + ", " +
                                               r.unc.liftHi.toFixed(3) + "] clear of min_lift")
                    : "seed rule: γ·Δ_K vs min_lift (no counts, so no interval)";
    if (r.unc && !S.boot.weights_b64) why += " (problems resampled by this page, not fp's own draws: near " +
                                             "min_lift the call can differ from report.json)";
    put("out-why", r.rule, why);
    put("out-lift-pp", r.liftPP, (r.liftPP >= 0 ? "+" : "") + r.liftPP.toFixed(1) + " pp");
    put("out-cost", r.cost, "$" + Math.round(r.cost).toLocaleString("en-US"));
    $("extrapolated-note").hidden = !r.extrapolated;
    renderBands(r);
    drawChart(r);
  }
  function renderBands(r) {
    var box = $("fate"), show = state.mode !== "single";
    box.hidden = !show;
    if (!show) return;
    var total = r.lift, body = $("fate-body");
    while (body.firstChild) body.removeChild(body.firstChild);
    ["within reach", "hard", "easy", "wall"].forEach(function (b) {
      var tr = document.createElement("tr"), cnt = r.bands[b][0], contrib = r.bands[b][1] / r.S.P;
      var cells = [b, String(cnt), (contrib >= 0 ? "+" : "") + (100 * contrib).toFixed(1) + " pp",
                   total > 0 ? Math.round(100 * contrib / total) + "%" : "–"];
      cells.forEach(function (t, j) {
        var td = document.createElement("td");
        td.textContent = t;
        if (j === 2) td.setAttribute("data-value", String(contrib));
        tr.appendChild(td);
      });
      tr.setAttribute("data-band", b);
      body.appendChild(tr);
    });
  }

  // ---- chart (SVG, log2 K axis) ------------------------------------------------------------
  var W = 640, H = 360, L = 52, R = 16, T = 14, B = 42, NS = "http://www.w3.org/2000/svg";
  function xOf(k) { return L + (Math.log(k) / Math.log(KMAX)) * (W - L - R); }
  function yOf(v) { return T + (1 - v) * (H - T - B); }
  function el(tag, attrs, text) {
    var e = document.createElementNS(NS, tag);
    Object.keys(attrs).forEach(function (a) { e.setAttribute(a, attrs[a]); });
    if (text !== undefined) e.textContent = text;
    return e;
  }
  var GRID = (function () {
    var ks = [], k = 1;
    while (k <= KMAX) { ks.push(k); k = k < 32 ? k + 1 : Math.max(k + 1, Math.round(k * 1.06)); }
    if (ks[ks.length - 1] !== KMAX) ks.push(KMAX);
    return ks;
  })();
  function path(ks, f) {
    return ks.map(function (k, i) { return (i ? "L" : "M") + xOf(k).toFixed(2) + " " + yOf(f(k)).toFixed(2); }).join(" ");
  }
  function baseAt(S, k) {
    var s = 0;
    for (var i = 0; i < S.P; i++) s += S.passk(i, k);
    return s / S.P;
  }
  function drawChart(r) {
    var svg = $("chart"), S = r.S;
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    for (var v = 0; v <= 1.0001; v += 0.25) {
      svg.appendChild(el("line", {x1: L, x2: W - R, y1: yOf(v), y2: yOf(v), class: "grid"}));
      svg.appendChild(el("text", {x: L - 8, y: yOf(v) + 4, class: "tick", "text-anchor": "end"}, v.toFixed(2)));
    }
    for (var k = 1; k <= KMAX; k *= 2) {
      svg.appendChild(el("line", {x1: xOf(k), x2: xOf(k), y1: T, y2: H - B, class: "grid"}));
      svg.appendChild(el("text", {x: xOf(k), y: H - B + 16, class: "tick", "text-anchor": "middle"}, String(k)));
    }
    svg.appendChild(el("text", {x: (L + W - R) / 2, y: H - 6, class: "axis", "text-anchor": "middle"},
                       "K (samples per prompt)"));
    svg.appendChild(el("text", {x: 14, y: (T + H - B) / 2, class: "axis", "text-anchor": "middle",
                                transform: "rotate(-90 14 " + (T + H - B) / 2 + ")"}, "pass@K"));
    var base = {}, after = {}, lo = {}, hi = {};
    var ks = GRID.filter(function (k) { return k !== r.K; }).concat([r.K]).sort(function (a, b) { return a - b; });
    ks.forEach(function (k) {
      base[k] = baseAt(S, k);
      after[k] = meanRate(r.q, k, S.form); lo[k] = meanRate(r.qlo, k, S.form); hi[k] = meanRate(r.qhi, k, S.form);
    });
    // the elicitation gap: between the base curve and its pass@1, up to K
    var upto = ks.filter(function (k) { return k <= r.K; });
    var gapPath = path(upto, function (k) { return base[k]; }) + " L" + xOf(r.K).toFixed(2) + " " +
                  yOf(r.pass1).toFixed(2) + " L" + xOf(1).toFixed(2) + " " + yOf(r.pass1).toFixed(2) + " Z";
    svg.appendChild(el("path", {d: gapPath, class: "gap"}));
    var band = path(ks, function (k) { return hi[k]; }) + " " +
               ks.slice().reverse().map(function (k) { return "L" + xOf(k).toFixed(2) + " " + yOf(lo[k]).toFixed(2); }).join(" ") + " Z";
    svg.appendChild(el("path", {d: band, class: "band"}));
    var inside = ks.filter(function (k) { return k <= S.nmin; }), beyond = ks.filter(function (k) { return k >= S.nmin; });
    svg.appendChild(el("path", {d: path(inside, function (k) { return base[k]; }), class: "base"}));
    if (S.counts && beyond.length > 1)
      svg.appendChild(el("path", {d: path(beyond, function (k) { return base[k]; }), class: "base extrapolated"}));
    svg.appendChild(el("path", {d: path(ks, function (k) { return after[k]; }), class: "after"}));
    svg.appendChild(el("line", {x1: xOf(r.K), x2: xOf(r.K), y1: T, y2: H - B, class: "kline"}));
    svg.appendChild(el("circle", {cx: xOf(r.K), cy: yOf(r.passK), r: 4, class: "base-dot"}));
    svg.appendChild(el("circle", {cx: xOf(1), cy: yOf(r.after), r: 4, class: "after-dot"}));
  }

  // ---- controls ---------------------------------------------------------------------------
  function setControls() {
    $("p1").value = state.p1; $("K").value = state.K; $("gamma").value = state.gamma;
    $("mode").value = state.mode;
  }
  function applyPreset(p) {
    state.mode = p.mode;
    if (p.p1 !== undefined) state.p1 = p.p1;
    state.K = p.K; state.gamma = p.gamma;
    $("preset-note").textContent = p.note;
    setControls();
    render();
  }
  $("p1").addEventListener("input", function (e) { state.p1 = parseFloat(e.target.value); state.mode = "single"; render(); });
  $("K").addEventListener("input", function (e) { state.K = parseInt(e.target.value, 10); render(); });
  $("gamma").addEventListener("input", function (e) { state.gamma = parseFloat(e.target.value); render(); });
  $("mode").addEventListener("change", function (e) { state.mode = e.target.value; render(); });
  var bar = $("presets");
  D.presets.forEach(function (p) {
    var b = document.createElement("button");
    b.type = "button"; b.textContent = p.name; b.setAttribute("data-preset", p.name); b.title = p.note;
    b.addEventListener("click", function () { applyPreset(p); });
    bar.appendChild(b);
  });
  $("K").max = KMAX;
  applyPreset(D.presets.filter(function (p) { return p.name === D.start; })[0]);
  window.fastpassWhatif = {state: state, compute: compute, render: render};
})();
"""
