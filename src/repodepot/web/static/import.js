// Live import progress: the server pushes the whole job on every change (SSE).
(function () {
  "use strict";
  const root = document.getElementById("job");
  if (!root) return;
  const $ = (id) => document.getElementById(id);
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  function size(bytes) {
    let value = bytes, unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit++; }
    return (unit ? value.toFixed(1) : String(value)) + " " + units[unit];
  }
  function render(job) {
    $("status").textContent = job.status;
    $("status").className = "status " + job.status;
    $("phase").textContent = job.phase;
    $("queue").textContent = job.queue_position ? "· number " + job.queue_position + " in the queue" : "";
    const bar = $("bar");
    bar.className = "bar " + job.status;
    bar.setAttribute("aria-valuenow", String(job.percent));
    bar.firstElementChild.style.width = job.percent + "%";
    $("percent").textContent = job.percent.toFixed(1);
    $("objects").textContent = job.received_objects + " / " + (job.total_objects || "?");
    $("bytes").textContent = size(job.received_bytes);
    $("speed").textContent = job.throughput ? size(job.throughput) + "/s" : "—";
    $("eta").textContent = job.eta_seconds == null ? "—" : Math.round(job.eta_seconds) + " s";
    $("deltas").textContent = job.resolved_deltas + " / " + (job.total_deltas || "?");
    $("attempt").textContent = String(job.attempt);
    $("result").hidden = job.status !== "success";
    $("job-error").hidden = !job.error;
    $("job-error").textContent = job.error || "";
    $("actions").hidden = job.status !== "pending" && job.status !== "running";
  }
  // The width is set here, not in a style attribute: the CSP allows no inline style.
  const bar = $("bar");
  bar.firstElementChild.style.width = bar.getAttribute("aria-valuenow") + "%";
  const source = new EventSource("/api/imports/" + root.dataset.id + "/events");
  source.addEventListener("progress", (event) => render(JSON.parse(event.data)));
  source.addEventListener("done", (event) => { render(JSON.parse(event.data)); source.close(); });
})();
