// The usage charts of the VM page and of the host page (templates/domains/usage.html, issue 14), drawn with uPlot:
// - the span buttons fetch the section's data-url with ?span=hour|day|week|month (domains.views.domain_usage and
//   host_usage: columns `t` and each figure's average and `<figure>_max`, ordered by time) and draw CPU, memory,
//   disk and network; times are the browser's local time (uPlot's own), widths follow the section's;
// - on the VM page (the section's data-pushed) the hour follows the live socket: live.js's `usage` swap fires
//   "usage-sample" on #usage with the last interval's figures, which are appended; points older than the hour
//   drop off; after the socket comes back, the shown span is fetched again (samples may have been missed
//   meanwhile). Without data-pushed (the host page) the hour is fetched again every sampling interval;
// - the longer spans fetch again once per resolution (that is how often their newest point closes) and leave
//   the pushes alone.
// The template owns every word on the page, in the reader's language: the lines' labels are the section's
// data-line-* (the memory line's is its shown note's data-legend); this file only shows or hides its notes and
// fills in numbers.
(function () {
  "use strict";

  const HEIGHT = 200;
  const SPAN_SECONDS = {hour: 3600, day: 86400, week: 7 * 86400, month: 30 * 86400};
  const EMPTY_NOTE = {hour: "empty-hour", day: "empty-day", week: "empty-long", month: "empty-long"};
  const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  const FIRST = "#2456a6";  // read, receive, CPU, memory
  const SECOND = "#c2561a";  // write, transmit
  const MAX_DASH = [5, 4];
  // The steps a bytes axis may take: round numbers of B, KiB, MiB... (uPlot's own are round in decimal).
  const BYTE_STEPS = [0, 1, 2, 3, 4, 5].reduce(function (steps, power) {
    return steps.concat([1, 2, 4, 5, 10, 20, 25, 50, 100, 200, 250, 500].map(function (step) {
      return step * Math.pow(1024, power);
    }));
  }, []);

  // --- Numbers in words. ---

  function trimmed(value, digits) {
    return String(Number(value.toFixed(digits)));
  }

  function unitOf(magnitude) {  // the binary unit a value this big reads best in: [its index, its size]
    let index = 0;
    let size = 1;
    while (Math.abs(magnitude) >= 1024 * size && index < UNITS.length - 1) {
      size *= 1024;
      index += 1;
    }
    return [index, size];
  }

  function bytes(value, suffix) {
    if (value == null) return "–";
    const [index, size] = unitOf(value);
    const scaled = value / size;
    return trimmed(scaled, index === 0 || Math.abs(scaled) >= 100 ? 0 : 1) + " " + UNITS[index] + suffix;
  }

  function bytesAxis(suffix) {  // one unit along the whole axis, the one its largest mark reads best in
    return function (_u, splits) {
      const [index, size] = unitOf(Math.max.apply(null, splits.map(Math.abs)));
      return splits.map(function (split) { return trimmed(split / size, 2) + " " + UNITS[index] + suffix; });
    };
  }

  function percent(value) {
    return value == null ? "–" : trimmed(value, 1) + " %";
  }

  // --- What each chart draws. ---

  function line(label, column, color, maximum) {
    return {label: label, column: column, stroke: color, width: maximum ? 1 : 2, dash: maximum ? MAX_DASH : undefined};
  }

  function maximumOf(words, label) {  // the dashed line's label, worded by the template: "{line}, maximum"
    return words.lineMaximumOf.replace("{line}", label);
  }

  const CHARTS = {
    cpu: {
      lines: function (words) {
        return [line(words.lineAverage, "cpu_percent", FIRST), line(words.lineMaximum, "cpu_percent_max", FIRST, true)];
      },
      value: percent,
      axis: function (_u, splits) { return splits.map(function (split) { return trimmed(split, 1) + " %"; }); },
      top: function (max) { return Math.min(Math.max(max * 1.1, 1), Math.max(max, 100)); },
    },
    memory: {
      lines: function (words, label) {
        return [line(label, "memory_used_kib", FIRST), line(maximumOf(words, label), "memory_used_kib_max", FIRST, true)];
      },
      scale: 1024,  // KiB: drawn in bytes, shown in MiB or GiB
      value: function (value) { return bytes(value, ""); },
      axis: bytesAxis(""),
      steps: BYTE_STEPS,
    },
    disk: {
      lines: function (words) {
        return [line(words.lineRead, "disk_read_bytes_per_second", FIRST),
          line(maximumOf(words, words.lineRead), "disk_read_bytes_per_second_max", FIRST, true),
          line(words.lineWritten, "disk_write_bytes_per_second", SECOND),
          line(maximumOf(words, words.lineWritten), "disk_write_bytes_per_second_max", SECOND, true)];
      },
      value: function (value) { return bytes(value, "/s"); },
      axis: bytesAxis("/s"),
      steps: BYTE_STEPS,
    },
    network: {
      lines: function (words) {
        return [line(words.lineReceived, "net_receive_bytes_per_second", FIRST),
          line(maximumOf(words, words.lineReceived), "net_receive_bytes_per_second_max", FIRST, true),
          line(words.lineSent, "net_transmit_bytes_per_second", SECOND),
          line(maximumOf(words, words.lineSent), "net_transmit_bytes_per_second_max", SECOND, true)];
      },
      value: function (value) { return bytes(value, "/s"); },
      axis: bytesAxis("/s"),
      steps: BYTE_STEPS,
    },
  };

  function axisWidth(_u, values) {  // room for the longest mark
    const longest = (values || []).reduce(function (most, value) { return Math.max(most, String(value).length); }, 4);
    return Math.ceil(longest * 7 + 16);
  }

  function lonePoints(u, index, shown) {  // a point between two gaps has no line: it is drawn as a dot
    if (shown) return null;  // uPlot draws every point anyway (few enough for the width)
    const values = u.data[index];
    const lone = [];
    for (let i = 0; i < values.length; i++) {
      if (values[i] != null && (i === 0 || values[i - 1] == null) && (i === values.length - 1 || values[i + 1] == null)) {
        lone.push(i);
      }
    }
    return lone.length ? lone : null;
  }

  // --- One section's charts. ---

  function Usage(section) {
    this.section = section;
    this.span = "hour";
    this.columns = null;  // the shown span's columns, as fetched and pushed
    this.resolution = 10;
    this.interval = null;  // seconds between samples (the server's setting); 0: none are taken
    this.memorySource = null;
    this.memoryLegend = section.dataset.lineUsed;  // the memory line's label: the data-legend of the source's note
    this.pushed = "pushed" in section.dataset;  // the live socket brings the hour's samples
    this.charts = {};  // name: its uPlot
    this.lines = {};  // name: what it draws (line())
    this.pending = [];  // samples pushed while the hour was being fetched
    this.request = 0;  // the latest fetch's number: the answers of older ones are dropped
    this.timer = null;
    this.sockets = 0;

    this.onClick = this.onClick.bind(this);
    this.onSample = this.onSample.bind(this);
    this.onSocketOpen = this.onSocketOpen.bind(this);
    section.querySelector(".usage-spans").addEventListener("click", this.onClick);
    section.addEventListener("usage-sample", this.onSample);
    document.addEventListener("htmx:wsOpen", this.onSocketOpen);
    this.resizer = new ResizeObserver(this.resize.bind(this));
    section.querySelectorAll(".usage-plot").forEach(function (plot) { this.resizer.observe(plot); }, this);
    this.fetch();
  }

  Usage.prototype.destroy = function () {
    clearInterval(this.timer);
    this.resizer.disconnect();
    document.removeEventListener("htmx:wsOpen", this.onSocketOpen);
    Object.keys(this.charts).forEach(function (name) { this.charts[name].destroy(); }, this);
    this.charts = {};
  };

  Usage.prototype.onClick = function (event) {
    const button = event.target.closest("button[data-span]");
    if (!button || button.dataset.span === this.span) return;
    this.choose(button.dataset.span);
  };

  Usage.prototype.choose = function (span) {
    this.span = span;
    this.section.querySelectorAll(".usage-spans button").forEach(function (button) {
      button.setAttribute("aria-pressed", String(button.dataset.span === span));
    });
    this.columns = null;
    this.fetch();
  };

  Usage.prototype.onSocketOpen = function () {
    if (this.sockets++ > 0) this.fetch();  // back after a loss: what was pushed meanwhile is missing
  };

  Usage.prototype.fetch = function () {
    const number = ++this.request;
    const span = this.span;
    const url = new URL(this.section.dataset.url, location.href);
    url.searchParams.set("span", span);
    this.section.querySelector(".usage-charts").setAttribute("aria-busy", "true");
    if (span === "hour") {  // the pushes meanwhile wait for the answer, which holds the points before them
      this.columns = null;
      this.pending = [];
    }
    const self = this;
    window.fetch(url.href, {headers: {Accept: "application/json"}, credentials: "same-origin"})
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (answer) {
        if (number !== self.request) return;
        self.loaded(answer);
      })
      .catch(function () {
        if (number !== self.request) return;
        self.note("error", true);
        self.section.querySelector(".usage-charts").setAttribute("aria-busy", "false");
      });
  };

  Usage.prototype.loaded = function (answer) {
    this.note("error", false);
    this.resolution = answer.resolution;
    this.interval = answer.interval;
    this.columns = answer.series;
    if (answer.memory_source) this.setMemorySource(answer.memory_source);
    const interval = this.section.querySelector(".usage-interval");
    if (interval) interval.textContent = String(answer.interval);
    if (this.span === "hour") {
      const pending = this.pending;
      this.pending = [];
      pending.forEach(this.append, this);
    }
    clearInterval(this.timer);
    const every = this.span !== "hour" ? this.resolution : this.pushed ? 0 : this.interval;
    this.timer = every > 0 ? setInterval(this.fetch.bind(this), every * 1000) : null;
    this.draw();
    this.section.querySelector(".usage-charts").setAttribute("aria-busy", "false");
  };

  Usage.prototype.onSample = function (event) {
    const sample = event.detail;
    if (!sample || typeof sample.t !== "number") return;
    if (sample.memory_source) this.setMemorySource(sample.memory_source);
    if (this.span !== "hour") return;
    if (this.columns === null) {  // the hour is being fetched: added once it is in
      this.pending.push(sample);
      if (this.pending.length > SPAN_SECONDS.hour) this.pending.shift();  // the fetch failed: keep the hour's
      return;
    }
    this.append(sample);
    this.draw();
  };

  Usage.prototype.append = function (sample) {
    const columns = this.columns;
    const times = columns.t;
    if (times.length && sample.t <= times[times.length - 1]) return;  // already in what was fetched
    Object.keys(columns).forEach(function (name) {
      if (name === "t") return;
      const figure = name.endsWith("_max") ? name.slice(0, -4) : name;  // one sample: its maximum is itself
      columns[name].push(typeof sample[figure] === "number" ? sample[figure] : null);
    });
    times.push(sample.t);
    let old = 0;  // the points that left the hour
    while (old < times.length && times[old] < sample.t - SPAN_SECONDS.hour) old += 1;
    if (old) Object.keys(columns).forEach(function (name) { columns[name].splice(0, old); });
  };

  Usage.prototype.setMemorySource = function (source) {
    if (source === this.memorySource) return;
    this.memorySource = source;
    this.memoryLegend = this.section.dataset.lineUsed;
    this.section.querySelectorAll("[data-memory-source]").forEach(function (element) {
      element.hidden = element.dataset.memorySource !== source;
      if (!element.hidden && element.dataset.legend) this.memoryLegend = element.dataset.legend;
    }, this);
    if (this.charts.memory) {  // its lines are labelled by the source: drawn anew
      this.charts.memory.destroy();
      delete this.charts.memory;
      if (this.columns !== null) this.draw();
    }
  };

  Usage.prototype.note = function (name, shown) {
    const element = this.section.querySelector("[data-note='" + name + "']");
    if (element) element.hidden = !shown;
  };

  Usage.prototype.notes = function () {
    const empty = this.columns.t.length === 0 && this.interval > 0;
    Object.keys(EMPTY_NOTE).forEach(function (span) { this.note(EMPTY_NOTE[span], false); }, this);
    if (empty) this.note(EMPTY_NOTE[this.span], true);
    this.note("off", this.interval === 0);
  };

  // Drawn as uPlot wants it: [times, line, line...]; a stretch with no points is a gap, not a straight line.
  Usage.prototype.data = function (name) {
    const chart = CHARTS[name];
    const lines = this.lines[name];
    const times = this.columns.t;
    const scale = chart.scale || 1;
    const gap = 3 * Math.max(this.resolution, this.span === "hour" ? this.interval || 0 : 0);
    const data = [[]].concat(lines.map(function () { return []; }));
    for (let i = 0; i < times.length; i++) {
      if (i > 0 && times[i] - times[i - 1] > gap) {
        data[0].push((times[i] + times[i - 1]) / 2);
        lines.forEach(function (_line, j) { data[j + 1].push(null); });
      }
      data[0].push(times[i]);
      lines.forEach(function (line, j) {
        const value = this.columns[line.column][i];
        data[j + 1].push(value == null ? null : value * scale);
      }, this);
    }
    return data;
  };

  Usage.prototype.shown = function () {  // the span, up to now (or the newest point, if the clocks differ)
    const times = this.columns.t;
    const end = Math.max(Date.now() / 1000, times.length ? times[times.length - 1] : 0);
    return [end - SPAN_SECONDS[this.span], end];
  };

  // The axes' labels and grid in the page's colours (vmportal.css's tokens), so they read in the dark theme too.
  function themed(axis) {
    const style = getComputedStyle(document.documentElement);
    axis.stroke = style.getPropertyValue("--muted").trim() || "#4f5869";
    axis.grid = {stroke: style.getPropertyValue("--line").trim() || "#d3d9e2", width: 1};
    axis.ticks = {stroke: axis.grid.stroke, width: 1};
    return axis;
  }

  Usage.prototype.options = function (name, plot) {
    const chart = CHARTS[name];
    const self = this;
    const lines = this.lines[name] = chart.lines(this.section.dataset, this.memoryLegend);
    return {
      width: Math.max(plot.clientWidth, 200),
      height: HEIGHT,
      cursor: {sync: {key: "usage"}, drag: {x: false, y: false}},
      scales: {
        x: {time: true, range: function () { return self.shown(); }},
        y: {range: function (_u, _min, max) { return [0, chart.top ? chart.top(max || 0) : Math.max(max || 0, 1) * 1.1]; }},
      },
      axes: [themed({}), themed({values: chart.axis, incrs: chart.steps, size: axisWidth})],
      series: [{label: self.section.dataset.lineTime, value: "{YYYY}-{MM}-{DD} {HH}:{mm}:{ss}"}].concat(lines.map(function (line) {
        return {label: line.label, stroke: line.stroke, width: line.width, dash: line.dash, spanGaps: false,
          points: {filter: lonePoints}, value: function (_u, value) { return chart.value(value); }};
      })),
      hooks: {
        // Off the chart, the legend shows the newest figures rather than dashes.
        setLegend: [function (u) {
          if (u.legend.idx == null && u.data[0].length) u.setLegend({idx: u.data[0].length - 1}, false);
        }],
      },
    };
  };

  Usage.prototype.draw = function () {
    this.notes();
    Object.keys(CHARTS).forEach(function (name) {
      const plot = this.section.querySelector("[data-chart='" + name + "'] .usage-plot");
      if (!plot) return;
      let chart = this.charts[name];
      if (!chart) {
        chart = this.charts[name] = new uPlot(this.options(name, plot), this.data(name), plot);
      } else {
        chart.setData(this.data(name));
      }
      const newest = chart.data[0].length - 1;
      if (newest >= 0 && !(chart.cursor.left >= 0)) chart.setLegend({idx: newest}, false);  // not hovered
    }, this);
  };

  Usage.prototype.resize = function () {
    Object.keys(this.charts).forEach(function (name) {
      const chart = this.charts[name];
      const width = Math.max(chart.root.parentNode.clientWidth, 200);
      if (width !== chart.width) chart.setSize({width: width, height: HEIGHT});
    }, this);
  };

  function start() {
    if (window.vmportalUsage) window.vmportalUsage.destroy();  // the page came again through a boosted form
    const section = document.getElementById("usage");
    window.vmportalUsage = section && typeof uPlot === "function" ? new Usage(section) : null;
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
