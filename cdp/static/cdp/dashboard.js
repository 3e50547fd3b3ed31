// Draws the dashboard charts from the numbers the server rendered into #chart-data (no API round trip).
(function () {
  const data = JSON.parse(document.getElementById("chart-data").textContent);
  const palette = { page: "#98a2b3", track: "#12805c", identify: "#f79009", screen: "#7a5af8", group: "#2e90fa", alias: "#ee46bc" };
  const labels = data.days.map((d) => d.slice(5));
  const common = {
    responsive: true, maintainAspectRatio: false, animation: false,
    plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
    scales: { x: { grid: { display: false } }, y: { beginAtZero: true, ticks: { precision: 0 } } },
  };
  new Chart(document.getElementById("chart-events"), {
    type: "bar",
    data: { labels, datasets: Object.entries(data.events_by_type).map(([type, series]) => ({
      label: type, data: series, backgroundColor: palette[type] || "#3b5bdb", stack: "events" })) },
    options: { ...common, scales: { ...common.scales, x: { ...common.scales.x, stacked: true }, y: { ...common.scales.y, stacked: true } } },
  });
  const single = (id, type, label, series, color) => new Chart(document.getElementById(id), {
    type,
    data: { labels, datasets: [{ label, data: series, borderColor: color, backgroundColor: type === "bar" ? color : color + "22", fill: true, tension: 0.25, pointRadius: 0 }] },
    options: { ...common, plugins: { legend: { display: false } } },
  });
  single("chart-profiles", "line", "New profiles", data.new_profiles, "#3b5bdb");
  // Bars: merges happen when the pipeline links identities, often many in one run.
  single("chart-merges", "bar", "Merges", data.merges, "#f79009");
})();
