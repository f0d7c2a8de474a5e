// The Swarm view's script: refreshes the page from the view's JSON endpoints.
// Every value from the server (task ids, reasons, host names, log text) enters the page
// through textContent or an attribute set by name: never as markup.
(function () {
  "use strict";

  var REFRESH_MS = 3000; // while the swarm runs
  var RETRY_MS = 10000; // after an error
  var body = document.body;
  var query = body.getAttribute("data-query") || "";
  var perPage = parseInt(body.getAttribute("data-per-page"), 10) || 50;
  var view = { phase: null, timer: null, refreshes: 0, page: 1, pages: 1, failedOnly: false, q: "", sort: "index",
               plotVersion: null, resultsShown: null, selected: null, searchTimer: null };

  function el(id) { return document.getElementById(id); }
  function text(id, value) { var node = el(id); if (node) node.textContent = value === null || value === undefined ? "" : String(value); }
  function show(id, visible) { var node = el(id); if (node) node.hidden = !visible; }
  function cell(row, value, cls) {
    var td = document.createElement("td");
    td.textContent = value === null || value === undefined ? "" : String(value);
    if (cls) td.className = cls;
    row.appendChild(td);
    return td;
  }

  function number(n) { return typeof n === "number" ? n.toLocaleString("en-US") : "–"; }
  function duration(seconds) {
    if (typeof seconds !== "number" || !isFinite(seconds)) return "";
    if (seconds < 1) return (seconds * 1000).toPrecision(3).replace(/\.?0+$/, "") + " ms";
    if (seconds < 120) return seconds.toPrecision(3).replace(/\.0+$/, "") + " s";
    if (seconds < 7200) return (seconds / 60).toPrecision(3) + " min";
    if (seconds < 172800) return (seconds / 3600).toPrecision(3) + " h";
    return (seconds / 86400).toPrecision(3) + " d";
  }
  function clock(epoch) {
    if (typeof epoch !== "number") return "";
    return new Date(epoch * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  }

  function url(path, params) {
    var parts = [path + "?" + query];
    Object.keys(params || {}).forEach(function (key) {
      parts.push(encodeURIComponent(key) + "=" + encodeURIComponent(String(params[key])));
    });
    return parts.join("&");
  }

  function getJson(path, params) {
    return fetch(url(path, params), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (data) {
          if (!response.ok) {
            var error = new Error(typeof data.detail === "string" ? data.detail : "HTTP " + response.status);
            error.status = response.status;
            throw error;
          }
          return data;
        });
      });
  }

  function explain(error) {
    if (error.status === 401) return "Your Airflow session has ended: reload the page to sign in again.";
    if (error.status === 403) return "You are not allowed to read this.";
    return error.message || String(error);
  }

  // --- status ---------------------------------------------------------------------------
  function schedule(ms) {
    clearTimeout(view.timer);
    view.timer = setTimeout(refresh, ms);
  }

  function refresh() {
    if (document.hidden) { schedule(REFRESH_MS); return; }
    getJson("api/swarm/status").then(function (status) {
      view.refreshes += 1;
      body.setAttribute("data-refreshes", String(view.refreshes));
      render(status);
      if (status.phase === "live") schedule(REFRESH_MS);
      else if (status.phase === "error") schedule(RETRY_MS);
    }).catch(function (error) {
      showMessage("Could not refresh: " + explain(error));
      if (error.status !== 401 && error.status !== 403) schedule(RETRY_MS);
    });
  }

  function showMessage(message) {
    text("message", message);
    show("message", !!message);
  }

  function render(status) {
    view.phase = status.phase;
    body.setAttribute("data-phase", status.phase);
    var phase = el("phase");
    phase.textContent = { live: "running", ended: "ended", error: "error", none: "no swarm" }[status.phase] || status.phase;
    phase.className = "phase " + status.phase;
    var ti = status.ti || {};
    text("ti-state", ti.state || "none");
    text("try-number", ti.try_number);
    var swarm = status.swarm;
    var line = [];
    if (swarm) {
      text("swarm-id", swarm.swarm_id);
      line.push(swarm.connection ? "on SSH connection " + swarm.connection : "on the Airflow machine");
      line.push(swarm.scheduler === "slurm" ? "SLURM jobs" : "managers started directly");
      line.push("round " + swarm.round);
    }
    var live = status.live;
    if (live) {
      line.push(live.shared ? "progress read less than 2 s ago" : "progress read just now");
      if (!live.caught_up) line.push("catching up with the swarm's events");
    }
    text("status-text", line.join(" · "));
    showMessage(status.message || (live && live.error ? "The last poll failed: " + live.error : ""));
    if (live) renderLive(live, status.phase === "live");
    else show("live", false);
    if (status.phase === "ended" && status.results) renderEnded(status.results);
  }

  function renderCounts(counts, total, withLive) {
    show("summary", true);
    text("count-total", number(total));
    text("count-succeeded", number(counts.succeeded || 0));
    text("count-failed", number(counts.failed || 0));
    text("count-running", number(counts.running || 0));
    text("count-pending", number(counts.pending || 0));
    Array.prototype.forEach.call(document.querySelectorAll("[data-live]"), function (node) { node.hidden = !withLive; });
    var share = function (n) { return total ? (100 * n / total).toFixed(3) + "%" : "0"; };
    el("bar-ok").style.width = share(counts.succeeded || 0);
    el("bar-fail").style.width = share(counts.failed || 0);
    el("bar-run").style.width = share(counts.running || 0);
  }

  function renderLive(live, running) {
    var counts = live.counts;
    renderCounts(counts, counts.total, running);
    text("throughput", typeof live.throughput === "number" ? live.throughput.toPrecision(3) : "–");
    text("eta", typeof live.eta_seconds === "number" ? (live.eta_seconds === 0 ? "0 s" : "≈ " + duration(live.eta_seconds)) : "–");
    text("counts-note", counts.earlier ? number(counts.earlier) + " task(s) had succeeded in earlier tries." : "");
    show("live", true);
    renderManagers(live.managers || []);
    renderRecentFailures(live.recent_failures || []);
    show("plots", true);
    var version = String(counts.succeeded + counts.failed) + "-" + String(counts.running);
    if (view.plotVersion !== version) {
      view.plotVersion = version;
      el("plot-completion").setAttribute("src", url("plots/completion.svg", { v: version }));
    }
  }

  function renderManagers(managers) {
    var tbody = el("managers").tBodies[0];
    tbody.replaceChildren();
    managers.forEach(function (m) {
      var row = document.createElement("tr");
      cell(row, m.name);
      cell(row, m.state, "state-" + m.state);
      cell(row, m.job_id || "–");
      cell(row, m.job_state || "–");
      cell(row, m.host || "–");
      cell(row, typeof m.heartbeat_age === "number" ? m.heartbeat_age + " s ago" : "–");
      cell(row, number(m.running), "num");
      cell(row, number(m.finished), "num");
      cell(row, number(m.failed), "num");
      tbody.appendChild(row);
    });
  }

  function renderRecentFailures(failures) {
    var tbody = el("recent-failures").tBodies[0];
    tbody.replaceChildren();
    show("recent-failures", failures.length > 0);
    show("no-recent-failures", failures.length === 0);
    failures.forEach(function (f) {
      var row = document.createElement("tr");
      var first = cell(row, "");
      first.appendChild(logButton(f.index, "task #" + f.index));
      cell(row, f.missing_outputs ? f.exit_code + " (outputs missing)" : f.exit_code, "num");
      cell(row, f.host);
      cell(row, f.manager);
      cell(row, clock(f.at));
      tbody.appendChild(row);
    });
  }

  // --- ended: results table and plots ------------------------------------------------------
  function renderEnded(results) {
    var counts = results.counts || {};
    renderCounts(counts, results.total, false);
    var others = Object.keys(counts).filter(function (k) { return k !== "succeeded" && k !== "failed"; });
    text("counts-note", others.map(function (k) { return number(counts[k]) + " " + k; }).join(" · "));
    if (view.resultsShown === results.fingerprint) return;
    view.resultsShown = results.fingerprint;
    show("results", true);
    show("plots", true);
    ["completion", "timeline", "durations"].forEach(function (name) {
      var img = el("plot-" + name);
      img.setAttribute("src", url("plots/" + name + ".svg", { v: results.fingerprint || "" }));
      img.hidden = false;
    });
    loadTasks();
  }

  function loadTasks() {
    var params = { page: view.page, per_page: perPage, sort: view.sort };
    if (view.failedOnly) params.failed_only = "true";
    if (view.q) params.q = view.q;
    getJson("api/swarm/tasks", params).then(renderTasks).catch(function (error) {
      showMessage("Could not read the tasks: " + explain(error));
    });
  }

  function renderTasks(data) {
    view.page = data.page;
    view.pages = data.pages;
    var tbody = el("tasks").tBodies[0];
    tbody.replaceChildren();
    data.rows.forEach(function (r) {
      var row = document.createElement("tr");
      row.className = r.state === "failed" ? "failed" : r.state === "succeeded" ? "succeeded" : "";
      row.setAttribute("data-index", String(r.index));
      if (view.selected === r.index) row.classList.add("selected");
      cell(row, r.index, "num");
      var id = cell(row, "", "id");
      id.appendChild(logButton(r.index, r.id));
      cell(row, r.state, "state");
      cell(row, r.reason, "reason");
      cell(row, r.exit_code, "num");
      cell(row, r.attempts, "num");
      cell(row, duration(r.duration), "num");
      cell(row, r.host);
      if (data.has_changes) cell(row, changeCounts(r.changes), "changes");
      tbody.appendChild(row);
    });
    Array.prototype.forEach.call(document.querySelectorAll("#tasks th.changes"), function (th) { th.hidden = !data.has_changes; });
    text("row-count", number(data.total_rows) + " of " + number(data.total) + " tasks");
    text("page-info", "page " + number(data.page) + " of " + number(data.pages));
    el("prev").disabled = data.page <= 1;
    el("next").disabled = data.page >= data.pages;
  }

  // A Custom Environment task's changes: "2 created, 1 modified, 0 deleted" (and the read-only part's).
  function changeCounts(counts) {
    if (!counts) return "";
    var parts = [];
    ["created", "modified", "deleted", "read_only_changed", "not_collected"].forEach(function (kind) {
      if (kind in counts) parts.push(number(counts[kind]) + " " + kind.replace(/_/g, " "));
    });
    return parts.join(", ");
  }

  function showChanges(changes) {
    var list = el("log-changes-list");
    list.replaceChildren();
    show("log-changes", !!changes);
    if (!changes) return;
    Object.keys(changes).forEach(function (kind) {
      var entry = changes[kind];
      var term = document.createElement("dt");
      term.textContent = kind.replace(/_/g, " ") + " (" + number(entry.count) + ")";
      list.appendChild(term);
      entry.paths.forEach(function (path) {
        var item = document.createElement("dd");
        item.textContent = path; // text, never markup: file names are the task's
        list.appendChild(item);
      });
      if (entry.count > entry.paths.length) {
        var more = document.createElement("dd");
        more.className = "muted";
        more.textContent = "… " + number(entry.count - entry.paths.length) + " more in the manifest";
        list.appendChild(more);
      }
    });
  }

  // --- logs ---------------------------------------------------------------------------------
  function logButton(index, label) {
    var button = document.createElement("button");
    button.type = "button";
    button.className = "link";
    button.textContent = label;
    button.title = "show the end of its stdout and stderr";
    button.addEventListener("click", function () { showLogs(index); });
    return button;
  }

  function streamNote(stream) {
    if (!stream || !stream.exists) return "0 bytes (not kept)";
    if (stream.truncated) return "last " + number(stream.shown) + " of " + number(stream.size) + " bytes";
    return number(stream.size) + " bytes";
  }

  function showLogs(index) {
    view.selected = index;
    Array.prototype.forEach.call(document.querySelectorAll("#tasks tr[data-index]"), function (row) {
      row.classList.toggle("selected", row.getAttribute("data-index") === String(index));
    });
    show("logs", true);
    text("log-task", "#" + index);
    text("log-folder", "");
    text("log-stderr", "loading…");
    showChanges(null);
    text("log-stdout", "");
    text("log-stderr-note", "");
    text("log-stdout-note", "");
    show("log-error", false);
    getJson("api/swarm/logs", { task: index }).then(function (logs) {
      if (view.selected !== index) return;
      text("log-task", logs.id + " (#" + logs.index + ")");
      text("log-folder", "folder " + logs.folder);
      showChanges(logs.changes);
      // An empty log is not kept once its task ended: absent reads as empty.
      text("log-stderr", logs.stderr.text || "(empty)");
      text("log-stdout", logs.stdout.text || "(empty)");
      text("log-stderr-note", streamNote(logs.stderr));
      text("log-stdout-note", streamNote(logs.stdout));
      ["log-stderr", "log-stdout"].forEach(function (id) { var pre = el(id); pre.scrollTop = pre.scrollHeight; }); // the end first
      body.setAttribute("data-logs", String(index));
    }).catch(function (error) {
      text("log-stderr", "");
      text("log-error", "Could not read the logs: " + explain(error));
      show("log-error", true);
    });
    el("logs").scrollIntoView({ block: "nearest" });
  }

  // --- controls -----------------------------------------------------------------------------
  function wire() {
    el("failed-only").addEventListener("change", function (event) {
      view.failedOnly = event.target.checked; view.page = 1; loadTasks();
    });
    el("sort").addEventListener("change", function (event) { view.sort = event.target.value; view.page = 1; loadTasks(); });
    el("search").addEventListener("input", function (event) {
      clearTimeout(view.searchTimer);
      view.searchTimer = setTimeout(function () { view.q = event.target.value.trim(); view.page = 1; loadTasks(); }, 300);
    });
    el("prev").addEventListener("click", function () { if (view.page > 1) { view.page -= 1; loadTasks(); } });
    el("next").addEventListener("click", function () { if (view.page < view.pages) { view.page += 1; loadTasks(); } });
    el("log-go").addEventListener("click", function () {
      var index = parseInt(el("log-index").value, 10);
      if (index >= 0) showLogs(index);
    });
    document.addEventListener("visibilitychange", function () { if (!document.hidden && view.phase === "live") refresh(); });
  }

  function start() {
    if (!el("status-line")) return; // no swarm recorded: nothing to read
    wire();
    refresh();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
