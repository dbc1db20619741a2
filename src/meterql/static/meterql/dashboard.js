// GET /: the usage dashboard, a client of the public GraphQL API and nothing else.
//
// Two views, one GraphQL request each: "Billing" sends the BillingPage
// document and "Usage" the MetricsPage document, both exactly as shipped in
// meterql/queries/ (the page carries them as data blocks), with the reader's
// range, granularity, grouping and time zone as variables. Changing any of
// those sends the view's one request again; changing what the chart shows,
// or a table's order, sends nothing.
//
// The token is the explorer's (token.js: one paste serves both pages) and
// never goes into a URL. The view's request is the token's
// check too: a 401 or 403 is said in the bar, in words, at once.
//
// Money arrives as exact decimal strings ("12.3400"); it is rounded for
// display with integer arithmetic (BigInt), never through a float, and the
// exact value is in each figure's title. Only the chart's pixel heights use
// floats.
(function () {
  "use strict";

  var VIEWS = {
    billing: { operation: "BillingPage", doc: "mq-doc-billing" },
    usage: { operation: "MetricsPage", doc: "mq-doc-usage" },
  };
  // Distinct for colour-blind readers (Okabe-Ito, then greys for the rest).
  var COLOURS = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00",
                 "#F0E442", "#000000", "#999999"];
  var MOST_GROUPS = 8; // the chart stacks this many groups, then "other"

  var $ = function (id) { return document.getElementById(id); };
  var input = $("mq-token");
  var tokenState = $("mq-token-state");
  var message = $("mq-message");
  var view = $("mq-view");
  var controls = {
    range: $("mq-range"), from: $("mq-from"), to: $("mq-to"), custom: $("mq-custom"),
    granularity: $("mq-granularity"), group: $("mq-group"), measure: $("mq-measure"),
    tz: $("mq-tz"), csv: $("mq-csv"),
  };

  var state = {
    view: "billing",
    answer: null, // the last answer's data, with the view it is of
    period: null, // the billing period, from the last answer's plan
    chart: null, // the uPlot instance on screen
    sorts: {}, // table name -> {key, descending}
    asked: 0, // which request the page shows: a later one wins
    inflight: null,
  };

  // ---- the token --------------------------------------------------------

  var loadToken = window.meterql.loadToken;
  var saveToken = window.meterql.saveToken;
  var SAID = {
    none: "no token: paste one to see the account's usage",
    checking: "asking the server\u2026",
    accepted: "token accepted",
    refused: "token refused: the server does not know it, or it was revoked",
    forbidden: "token accepted, but it may not read (an ingest-only token?)",
    unreachable: "the server did not answer: try again",
  };
  function sayToken(verdict) {
    tokenState.textContent = SAID[verdict];
    tokenState.setAttribute("data-state", verdict);
  }

  // ---- numbers, money and dates ----------------------------------------

  var integer = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
  var compact = new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 1 });

  // "12.3456" -> 123456n: the API writes money with 4 places (more only for
  // exact prices, which this page does not show).
  function units(decimal) {
    var negative = decimal.charAt(0) === "-";
    var parts = decimal.replace("-", "").split(".");
    var fraction = ((parts[1] || "") + "0000").slice(0, 4);
    var value = BigInt(parts[0] + fraction);
    return negative ? -value : value;
  }
  // Dollars and cents, half up, from a decimal string: "$1,234.57".
  function usd(decimal) {
    var value = units(decimal);
    var negative = value < 0n;
    if (negative) value = -value;
    var cents = (value + 50n) / 100n;
    var whole = integer.format(cents / 100n);
    var rest = String(cents % 100n).padStart(2, "0");
    return (negative ? "\u2212$" : "$") + whole + "." + rest;
  }
  function count(n) { return integer.format(n); }
  function pct(part, whole) {
    if (!whole) return "";
    var tenths = Math.round((1000 * part) / whole);
    return " (" + (tenths / 10).toFixed(1) + "%)";
  }
  // An instant's local date in a zone, as the API writes dates: 2026-11-20.
  function localDate(instant, zone) {
    return new Intl.DateTimeFormat("en-CA", {
      timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit",
    }).format(instant);
  }
  // A local date (2026-11-20) for people, in their locale.
  function day(iso) {
    var parts = iso.split("-").map(Number);
    return new Intl.DateTimeFormat(undefined, {
      timeZone: "UTC", year: "numeric", month: "short", day: "numeric",
    }).format(new Date(Date.UTC(parts[0], parts[1] - 1, parts[2])));
  }
  function instantIn(iso, zone) {
    return new Intl.DateTimeFormat(undefined, {
      timeZone: zone, year: "numeric", month: "short", day: "numeric",
      hour: "2-digit", minute: "2-digit",
    }).format(new Date(iso));
  }

  // ---- building the page ------------------------------------------------

  // h("p", {className: "x"}, "text", child, ...): attributes as properties,
  // so nothing goes through innerHTML (group keys are free text).
  function h(tag, props) {
    var node = document.createElement(tag);
    Object.keys(props || {}).forEach(function (name) {
      if (name.indexOf("data-") === 0 || name.indexOf("aria-") === 0 || name === "role") {
        node.setAttribute(name, props[name]);
      } else {
        node[name] = props[name];
      }
    });
    for (var i = 2; i < arguments.length; i++) {
      var child = arguments[i];
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }
  function say(text, kind) {
    message.textContent = text || "";
    message.hidden = !text;
    message.setAttribute("data-kind", kind || "info");
  }
  function clearView() {
    if (state.chart) {
      state.chart.destroy();
      state.chart = null;
    }
    view.replaceChildren();
  }

  // A figure: a label, a big number, and the exact value as its title.
  function figure(label, shown, exact, name) {
    return h("div", { className: "mq-figure", "data-figure": name },
      h("span", { className: "mq-figure-label" }, label),
      h("span", { className: "mq-figure-value", title: exact === undefined ? "" : exact }, shown));
  }

  // One allowance: used of limit, as a bar. A limit of 0 means the plan has none.
  function allowance(label, used, limit, name) {
    var share = limit > 0 ? Math.min(1, used / limit) : 0;
    var fill = h("div", { className: "mq-allowance-fill" });
    fill.style.width = (100 * share).toFixed(1) + "%";
    var level = share >= 1 ? "over" : share >= 0.8 ? "near" : "ok";
    return h("div", { className: "mq-allowance", "data-allowance": name, "data-level": level },
      h("div", { className: "mq-allowance-head" },
        h("span", null, label),
        h("span", { className: "mq-allowance-text" },
          limit > 0 ? count(used) + " of " + count(limit) + pct(used, limit)
                    : count(used) + " (no limit in this plan)")),
      h("div", {
        className: "mq-allowance-bar", role: "meter", "aria-label": label,
        "aria-valuemin": "0", "aria-valuemax": String(limit), "aria-valuenow": String(used),
      }, fill));
  }

  function card(title, name) {
    var body = Array.prototype.slice.call(arguments, 2);
    return h.apply(null, ["article", { className: "mq-card", "data-card": name },
      h("h2", null, title)].concat(body));
  }

  // ---- tables -----------------------------------------------------------

  // columns: [{key, label, kind: "text"|"count"|"usd", value(row)}]
  function table(name, caption, columns, rows, empty) {
    var sort = state.sorts[name] || { key: columns[columns.length - 1].key, descending: true };
    var column = columns.filter(function (c) { return c.key === sort.key; })[0] || columns[0];
    var sorted = rows.slice().sort(function (a, b) {
      var x = column.value(a), y = column.value(b), order;
      if (column.kind === "text") order = x < y ? -1 : x > y ? 1 : 0;
      else if (column.kind === "usd") order = units(x) < units(y) ? -1 : units(x) > units(y) ? 1 : 0;
      else order = x - y;
      return sort.descending ? -order : order;
    });
    var head = h("tr", null);
    columns.forEach(function (c) {
      var button = h("button", { type: "button", className: "mq-sort" }, c.label);
      button.addEventListener("click", function () {
        var descending = sort.key === c.key ? !sort.descending : c.kind !== "text";
        state.sorts[name] = { key: c.key, descending: descending };
        showAnswer(); // a new order, not a new request
      });
      var sortedHere = c.key === column.key;
      head.append(h("th", {
        scope: "col", className: c.kind === "text" ? "" : "mq-num",
        "aria-sort": sortedHere ? (sort.descending ? "descending" : "ascending") : "none",
      }, button));
    });
    var body = h("tbody", null);
    sorted.forEach(function (row) {
      var tr = h("tr", null);
      columns.forEach(function (c) {
        var v = c.value(row);
        var shown = c.kind === "usd" ? usd(v) : c.kind === "count" ? count(v) : v;
        tr.append(h("td", {
          className: c.kind === "text" ? "" : "mq-num", "data-col": c.key,
          title: c.kind === "usd" ? v : "",
        }, shown));
      });
      body.append(tr);
    });
    if (!rows.length) {
      body.append(h("tr", null, h("td", { colSpan: columns.length, className: "mq-empty" }, empty)));
    }
    return h("div", { className: "mq-table-wrap" },
      h("table", { className: "mq-table", "data-table": name },
        h("caption", null, caption), h("thead", null, head), body));
  }

  function text(key, label, value) { return { key: key, label: label, kind: "text", value: value }; }
  function num(key, label, value) { return { key: key, label: label, kind: "count", value: value }; }
  function money(key, label, value) { return { key: key, label: label, kind: "usd", value: value }; }

  function instancesTable(instances, withSplit) {
    var rows = instances.edges.map(function (e) { return e.node; });
    var columns = [
      text("id", "Instance", function (n) { return n.id; }),
      text("hostname", "Hostname", function (n) { return n.hostname; }),
      text("status", "Status", function (n) { return n.status; }),
      num("requests", "Requests", function (n) { return n.usage.totals.requests; }),
    ];
    if (withSplit) {
      columns.push(num("tokensIn", "Tokens in", function (n) { return n.usage.totals.tokensIn; }));
      columns.push(num("tokensOut", "Tokens out", function (n) { return n.usage.totals.tokensOut; }));
    }
    columns.push(num("totalTokens", "Tokens", function (n) { return n.usage.totals.totalTokens; }));
    columns.push(money("cost", "Cost", function (n) { return n.usage.totals.estimatedCostUsd; }));
    var caption = "Instances" + (instances.totalCount > rows.length
      ? " (the first " + rows.length + " of " + instances.totalCount + ")" : "");
    return table("instances", caption, columns, rows,
      "No instances yet: an instance appears with its first recorded request.");
  }

  // ---- the chart --------------------------------------------------------

  // The series as stacked layers: each group's values per bucket, the
  // largest groups first, the rest summed as "other".
  function layers(usage, measure) {
    var buckets = usage.series;
    var keys = usage.groups.map(function (g) { return g.key; });
    // A bucket of the metrics page has tokens in and out, not their sum.
    var amount = function (thing) {
      if (measure === "totalTokens" && !(measure in thing)) return thing.tokensIn + thing.tokensOut;
      return thing[measure];
    };
    var value = function (thing) {
      return measure === "estimatedCostUsd" ? Number(units(thing[measure])) / 10000 : amount(thing);
    };
    if (!keys.length) {
      return [{ name: "all", values: buckets.map(value), raw: buckets.map(amount) }];
    }
    var all = keys.map(function (key, i) {
      var raw = buckets.map(function (b) { return amount(b.groups[i]); });
      var values = buckets.map(function (b) { return value(b.groups[i]); });
      var total = values.reduce(function (s, v) { return s + v; }, 0);
      return { name: key === "" ? "(no provider)" : key, values: values, raw: raw, total: total };
    });
    all.sort(function (a, b) { return b.total - a.total; });
    if (all.length <= MOST_GROUPS + 1) return all;
    var rest = all.slice(MOST_GROUPS);
    var other = {
      name: "other (" + rest.length + ")",
      values: buckets.map(function (_, j) {
        return rest.reduce(function (s, l) { return s + l.values[j]; }, 0);
      }),
      raw: null,
    };
    return all.slice(0, MOST_GROUPS).concat([other]);
  }

  function shortLabel(label, granularity) {
    if (granularity === "HOUR") return label.slice(5, 16).replace("T", " ");
    if (granularity === "DAY") return label.slice(5);
    return label;
  }

  // An axis label, with as many places as its ticks' spacing needs ($0.02,
  // $0.04 rather than $0, $0); big values in short form (1.2M).
  function axisValue(measure, v, step) {
    var places = 0;
    if (step > 0 && step < 1) {
      places = Math.ceil(-Math.log10(step));
      var scaled = step * Math.pow(10, places);
      if (Math.abs(scaled - Math.round(scaled)) > 1e-9) places += 1;  // 0.025: 3 places
      places = Math.min(4, places);
    }
    var shown = places ? v.toFixed(places) : compact.format(v);
    return measure === "estimatedCostUsd" ? "$" + shown : shown;
  }

  function chart(usage, measure) {
    if (Number(usage.totals.requests) === 0) return null; // the empty state says why
    var box = h("div", { className: "mq-chart", "data-chart": measure });
    var stack = layers(usage, measure);
    var labels = usage.series.map(function (b) { return b.label; });
    var xs = labels.map(function (_, i) { return i; });
    // Cumulative heights, drawn tallest first so that each layer shows above
    // the one below it (opaque bars, no fill between lines).
    var running = xs.map(function () { return 0; });
    var tops = stack.map(function (layer) {
      running = running.map(function (s, j) { return s + layer.values[j]; });
      return running.slice();
    });
    var data = [xs];
    var series = [{
      label: usage.granularity.charAt(0) + usage.granularity.slice(1).toLowerCase(),
      value: function (u, i) { return i == null ? "" : labels[i]; },
    }];
    for (var k = stack.length - 1; k >= 0; k--) {
      (function (layer, colour) {
        data.push(tops[stack.indexOf(layer)]);
        series.push({
          label: layer.name,
          stroke: colour,
          fill: colour,
          width: 0,
          paths: uPlot.paths.bars({ size: [0.7, 48], gap: 1 }),
          points: { show: false },
          value: function (u, v, si, i) {
            if (i == null) return "";
            if (!layer.raw) {  // "other": a sum of several groups' values
              var sum = layer.values[i];
              return measure === "estimatedCostUsd" ? "$" + sum.toFixed(4) : count(sum);
            }
            return measure === "estimatedCostUsd" ? usd(layer.raw[i]) : count(layer.raw[i]);
          },
        });
      })(stack[k], COLOURS[k % COLOURS.length]);
    }
    state.chartSpec = {
      data: data,
      options: {
        height: 260,
        series: series,
        scales: {
          x: { time: false, range: function (u, lo, hi) { return [lo - 0.5, hi + 0.5]; } },
          y: { range: function (u, lo, hi) { return [0, hi > 0 ? hi * 1.05 : 1]; } },
        },
        axes: [
          {
            incrs: [1, 2, 3, 4, 6, 7, 12, 14, 24, 28, 48, 72, 168, 336, 720],
            values: function (u, splits) {
              return splits.map(function (i) {
                return Number.isInteger(i) && labels[i] ? shortLabel(labels[i], usage.granularity) : "";
              });
            },
          },
          {
            values: function (u, splits) {
              var step = splits.length > 1 ? Math.abs(splits[1] - splits[0]) : 1;
              return splits.map(function (v) { return axisValue(measure, v, step); });
            },
            size: 60,
          },
        ],
        legend: { live: true },
        cursor: { drag: { x: false, y: false } },
      },
    };
    return box;
  }

  function drawChart() {
    var box = view.querySelector(".mq-chart");
    if (!box || !state.chartSpec || box.clientWidth === 0) return;
    var options = Object.assign({ width: box.clientWidth }, state.chartSpec.options);
    state.chart = new uPlot(options, state.chartSpec.data, box);
  }
  var resizing = 0;
  window.addEventListener("resize", function () {
    if (resizing) return;
    resizing = window.requestAnimationFrame(function () {
      resizing = 0;
      var box = view.querySelector(".mq-chart");
      if (state.chart && box) state.chart.setSize({ width: box.clientWidth, height: 260 });
    });
  });

  // ---- the views --------------------------------------------------------

  function rangeLine(usage) {
    var zone = usage.timeZone;
    var span = usage.from === usage.to ? day(usage.from) : day(usage.from) + " \u2013 " + day(usage.to);
    return span + " \u00b7 " + zone + " \u00b7 by " + usage.granularity.toLowerCase();
  }

  function emptyNote(usage) {
    if (Number(usage.totals.requests) !== 0) return null;
    return h("p", { className: "mq-empty", "data-empty": "usage" },
      "No usage in this range. Requests your agents record (POST /v1/usage, or the " +
      "recordUsage mutation) show here as soon as they are accepted.");
  }

  // The period is [start, end): its last local day is that of the instant before the end.
  function periodDates(period, zone) {
    return {
      from: localDate(new Date(period.currentPeriodStart), zone),
      to: localDate(new Date(new Date(period.currentPeriodEnd).getTime() - 1), zone),
    };
  }
  function periodLine(plan, zone) {
    var dates = periodDates(plan, zone);
    return day(dates.from) + " \u2013 " + day(dates.to);
  }

  function billingView(data) {
    var billing = data.billing, trial = data.trialStatus, usage = data.viewer.usage;
    var plan = billing.plan, period = billing.usage;
    var zone = usage.timeZone;
    var price = plan.priceCents ? usd(String(plan.priceCents / 100 | 0) + "." +
      String(plan.priceCents % 100).padStart(2, "0")) + " / " + plan.billingCycle : "free";
    var trialLine;
    if (trial.status === "trialing" && !trial.trialExpired) {
      trialLine = [figure("", trial.trialDaysRemaining + (trial.trialDaysRemaining === 1 ? " day left" : " days left"),
        undefined, "trial-days"),
        h("p", null, "ends " + instantIn(trial.trialEndsAt, zone))];
    } else if (trial.trialExpired) {
      trialLine = [figure("", "ended", undefined, "trial-days"),
        trial.trialEndsAt ? h("p", null, "on " + instantIn(trial.trialEndsAt, zone)) : null];
    } else {
      trialLine = [figure("", "none", undefined, "trial-days")];
    }
    var sites = period.maxSitesPerNode * period.webhostNodes;
    return [
      h("div", { className: "mq-cards" },
        card("Plan", "plan",
          figure("", plan.planName, plan.tierId, "plan"),
          h("p", null, h("span", { className: "mq-status", "data-status": plan.status },
            plan.status), " ", price),
          h("p", { title: plan.currentPeriodStart + " \u2013 " + plan.currentPeriodEnd },
            "period " + periodLine(plan, zone))),
        card("Trial", "trial", trialLine[0], trialLine[1]),
        card("This billing period", "period",
          allowance("Tokens", period.totalTokens, period.tokenAllowance, "tokens"),
          allowance("API calls", period.totalRequests, period.apiCallLimit, "requests"),
          allowance("Instances", period.activeInstances, period.instanceLimit, "instances"),
          allowance("Hosted sites", period.totalHostedSites, sites, "sites"),
          h("div", { className: "mq-figures" },
            figure("Platform", usd(period.platformCostUsd), period.platformCostUsd, "platform-cost"),
            figure("Total so far", usd(period.totalCostUsd), period.totalCostUsd, "period-cost")))),
      h("h2", { className: "mq-range-line" }, rangeLine(usage)),
      h("div", { className: "mq-figures" },
        figure("Requests", count(usage.totals.requests), undefined, "requests"),
        figure("Tokens", count(usage.totals.totalTokens), undefined, "totalTokens"),
        figure("Estimated cost", usd(usage.totals.estimatedCostUsd), usage.totals.estimatedCostUsd,
          "estimatedCostUsd")),
      emptyNote(usage),
      chart(usage, controls.measure.value),
      instancesTable(data.viewer.instances, false),
    ];
  }

  function usageView(data) {
    var usage = data.viewer.usage;
    var t = usage.totals;
    var models = table("models", "Models", [
      text("name", "Model", function (m) { return m.name; }),
      text("provider", "Provider", function (m) { return m.provider; }),
      num("requests", "Requests", function (m) { return m.usage.totals.requests; }),
      num("tokensIn", "Tokens in", function (m) { return m.usage.totals.tokensIn; }),
      num("tokensOut", "Tokens out", function (m) { return m.usage.totals.tokensOut; }),
      num("totalTokens", "Tokens", function (m) { return m.usage.totals.totalTokens; }),
      money("cost", "Cost", function (m) { return m.usage.totals.estimatedCostUsd; }),
    ], data.viewer.models, "No models yet: a model appears with its first recorded request.");
    return [
      h("h2", { className: "mq-range-line" }, rangeLine(usage)),
      h("div", { className: "mq-figures" },
        figure("Requests", count(t.requests), undefined, "requests"),
        figure("Tokens in", count(t.tokensIn), undefined, "tokensIn"),
        figure("Tokens out", count(t.tokensOut), undefined, "tokensOut"),
        figure("Tokens", count(t.totalTokens), undefined, "totalTokens"),
        figure("Estimated cost", usd(t.estimatedCostUsd), t.estimatedCostUsd, "estimatedCostUsd")),
      emptyNote(usage),
      chart(usage, controls.measure.value),
      models,
      instancesTable(data.viewer.instances, true),
    ];
  }

  function showAnswer() {
    clearView();
    state.chartSpec = null;
    if (!state.answer) return;
    var build = state.answer.view === "billing" ? billingView : usageView;
    build(state.answer.data).forEach(function (node) { if (node) view.append(node); });
    view.setAttribute("data-view", state.answer.view);
    drawChart();
  }

  // ---- asking the server --------------------------------------------------

  function variables() {
    var vars = {
      tz: controls.tz.value,
      granularity: controls.granularity.value,
      groupBy: controls.group.value || null,
    };
    // Each bucket's groups only when there are groups to stack: the field
    // costs the server per bucket even when it is empty.
    vars.grouped = vars.groupBy !== null;
    var range = controls.range.value;
    if (range === "custom") {
      vars.days = null;
      vars.range = { from: controls.from.value, to: controls.to.value };
    } else if (range === "period" && state.period) {
      vars.days = null;
      vars.range = periodDates(state.period, vars.tz);
    } else {
      vars.days = Number(range) || 30;
    }
    return vars;
  }

  function csvLink(usage) {
    var query = new URLSearchParams({
      from: usage.from, to: usage.to, tz: usage.timeZone,
      granularity: usage.granularity.toLowerCase(),
    });
    if (usage.groupBy) query.set("group_by", usage.groupBy.toLowerCase());
    controls.csv.href = "v1/export/usage.csv?" + query.toString();
    controls.csv.hidden = false;
  }

  // What a refused request means to the reader.
  function refusal(body) {
    var errors = (body && body.errors) || [];
    if (errors.length) return errors.map(function (e) { return e.message; }).join(" ");
    return (body && body.detail && String(body.detail)) || "the server could not answer";
  }

  function ask() {
    var token = input.value.trim();
    var mine = ++state.asked;
    if (state.inflight) state.inflight.abort();
    state.inflight = null;
    if (!token) {
      sayToken("none");
      state.answer = null;
      controls.csv.hidden = true;
      showAnswer();
      say("Paste a bearer token with the read scope into the bar above to see this " +
          "account's plan and usage (meterql token create --account \u2026 makes one).");
      return;
    }
    var which = state.view;
    var spec = VIEWS[which];
    var controller = new AbortController();
    state.inflight = controller;
    if (tokenState.getAttribute("data-state") !== "accepted") sayToken("checking");
    view.setAttribute("aria-busy", "true");
    window.meterql.postGraphQL("graphql", token, {
      query: $(spec.doc).textContent,
      operationName: spec.operation,
      variables: variables(),
    }, { signal: controller.signal }).then(function (response) {
      return response.json().then(
        function (body) { return { status: response.status, body: body }; },
        function () { return { status: response.status, body: null }; });
    }).then(function (reply) {
      if (mine !== state.asked) return;
      state.inflight = null;
      view.removeAttribute("aria-busy");
      // GraphQL says "not allowed" as an error's code, with a 200.
      var errors = (reply.body && reply.body.errors) || [];
      var forbidden = reply.status === 403 || errors.some(function (e) {
        return e.extensions && e.extensions.code === "FORBIDDEN";
      });
      if (reply.status === 401 || forbidden) {
        sayToken(reply.status === 401 ? "refused" : "forbidden");
        state.answer = null;
        controls.csv.hidden = true;
        showAnswer();
        say(reply.status === 401
          ? "The server refused this token: it does not know it, or it was revoked. Paste another."
          : "This token may not read usage. Use a token with the read scope.", "error");
        return;
      }
      sayToken("accepted");
      var data = reply.body && reply.body.data;
      if (reply.status !== 200 || !data) {
        // The token is fine; the question was not (a range too long for
        // hours, an unknown zone, ...): keep the last answer's controls.
        state.answer = null;
        controls.csv.hidden = true;
        showAnswer();
        say("The server refused this view: " + refusal(reply.body), "error");
        return;
      }
      var plan = which === "billing" ? data.billing.plan : data.viewer.plan;
      state.period = plan;
      state.answer = { view: which, data: data };
      csvLink(data.viewer.usage);
      if (controls.range.value !== "custom") {
        controls.from.value = data.viewer.usage.from;
        controls.to.value = data.viewer.usage.to;
      }
      say(reply.body.errors ? "Part of this view failed: " + refusal(reply.body) : "",
          reply.body.errors ? "error" : "info");
      showAnswer();
    }, function (error) {
      if (mine !== state.asked || error.name === "AbortError") return;
      state.inflight = null;
      view.removeAttribute("aria-busy");
      sayToken("unreachable");
      say("The server did not answer. Check that it runs, then change any setting to ask again.",
          "error");
    });
  }

  // ---- wiring -------------------------------------------------------------

  // Browsers name some zones by ICU's frozen, older IANA names; people (and
  // the API's answers) use the current ones. Both mean the same rules.
  var RENAMED = {
    "Africa/Asmera": "Africa/Asmara", "America/Buenos_Aires": "America/Argentina/Buenos_Aires",
    "America/Catamarca": "America/Argentina/Catamarca", "America/Cordoba": "America/Argentina/Cordoba",
    "America/Godthab": "America/Nuuk", "America/Indianapolis": "America/Indiana/Indianapolis",
    "America/Jujuy": "America/Argentina/Jujuy", "America/Louisville": "America/Kentucky/Louisville",
    "America/Mendoza": "America/Argentina/Mendoza", "Asia/Calcutta": "Asia/Kolkata",
    "Asia/Katmandu": "Asia/Kathmandu", "Asia/Rangoon": "Asia/Yangon",
    "Asia/Saigon": "Asia/Ho_Chi_Minh", "Atlantic/Faeroe": "Atlantic/Faroe",
    "Europe/Kiev": "Europe/Kyiv", "Pacific/Enderbury": "Pacific/Kanton",
    "Pacific/Ponape": "Pacific/Pohnpei", "Pacific/Truk": "Pacific/Chuuk",
  };
  function current(zone) { return RENAMED[zone] || zone; }

  function fillZones() {
    var mine = current(Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC");
    var zones = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];
    zones = zones.map(current).sort();
    if (zones.indexOf("UTC") < 0) zones = ["UTC"].concat(zones);
    if (zones.indexOf(mine) < 0) zones = [mine].concat(zones);
    zones.forEach(function (zone) {
      controls.tz.append(h("option", { value: zone, selected: zone === mine }, zone));
    });
    controls.tz.value = mine;
  }

  function showView() {
    var wanted = window.location.hash.replace("#", "");
    state.view = VIEWS[wanted] ? wanted : "billing";
    Object.keys(VIEWS).forEach(function (name) {
      var tab = $("mq-tab-" + name);
      if (name === state.view) tab.setAttribute("aria-current", "page");
      else tab.removeAttribute("aria-current");
    });
    document.title = "meterql \u00b7 " + (state.view === "billing" ? "billing" : "usage");
  }

  // Custom ranges are sent with "Show" (both dates typed first); every other
  // control asks at once.
  controls.range.addEventListener("change", function () {
    controls.custom.hidden = controls.range.value !== "custom";
    if (controls.range.value !== "custom") ask();
  });
  $("mq-controls").addEventListener("submit", function (event) {
    event.preventDefault();
    ask();
  });
  [controls.granularity, controls.group, controls.tz].forEach(function (select) {
    select.addEventListener("change", ask);
  });
  controls.measure.addEventListener("change", showAnswer);
  window.addEventListener("hashchange", function () {
    showView();
    ask();
  });

  // The CSV needs the token too, and a link cannot send a header: fetch it,
  // then hand the browser the file under the server's name for it.
  controls.csv.addEventListener("click", function (event) {
    event.preventDefault();
    var token = input.value.trim();
    fetch(controls.csv.href, {
      headers: { Authorization: "Bearer " + token },
      credentials: "omit",
    }).then(function (response) {
      if (!response.ok) {
        return response.json().then(function (body) {
          say("The server refused the CSV: " + refusal(body), "error");
        }, function () { say("The server refused the CSV.", "error"); });
      }
      var named = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "");
      return response.blob().then(function (blob) {
        var url = URL.createObjectURL(blob);
        var link = h("a", { href: url, download: named ? named[1] : "usage.csv" });
        document.body.append(link);
        link.click();
        link.remove();
        setTimeout(function () { URL.revokeObjectURL(url); }, 1000);
      });
    }, function () {
      say("The server did not answer: the CSV was not downloaded.", "error");
    });
  });

  input.addEventListener("change", function () {
    saveToken(input.value.trim());
    tokenState.removeAttribute("data-state");
    ask();
  });
  $("mq-forget").addEventListener("click", function () {
    input.value = "";
    saveToken("");
    ask();
  });

  controls.csv.hidden = true;
  fillZones();
  showView();
  input.value = loadToken();
  ask();
})();
