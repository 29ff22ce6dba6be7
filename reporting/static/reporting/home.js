/* Billing home: draws the charts from the JSON the page embeds; a click on a bar or point opens the
   admin list behind it. The same numbers (with the same links) are in each chart's <details> table. */
(function () {
  "use strict";
  var data = document.getElementById("billing-home-data");
  if (!data || typeof Chart === "undefined") { return; }
  var palette = ["#417690", "#e07a5f", "#3d405b", "#81b29a", "#f2cc8f", "#9c6644"];
  JSON.parse(data.textContent).forEach(function (chart) {
    var canvas = document.getElementById(chart.id);
    if (!canvas) { return; }
    var instance = new Chart(canvas, {
      type: chart.kind,
      data: {
        labels: chart.labels,
        datasets: chart.series.map(function (series, index) {
          var colour = palette[index % palette.length];
          return {
            label: series.label,
            data: series.values.map(Number),
            backgroundColor: colour,
            borderColor: colour,
            tension: 0.2,
            pointRadius: 3
          };
        })
      },
      options: {
        animation: false,
        maintainAspectRatio: false,
        scales: { y: { beginAtZero: true } },
        plugins: {
          tooltip: {
            callbacks: {
              label: function (ctx) {
                return ctx.dataset.label + ": " + chart.series[ctx.datasetIndex].display[ctx.dataIndex];
              }
            }
          }
        },
        onHover: function (event, elements) {
          event.native.target.style.cursor = elements.length ? "pointer" : "default";
        },
        onClick: function (event, elements) {
          if (!elements.length) { return; }
          var hit = elements[0];
          window.location.href = chart.series[hit.datasetIndex].urls[hit.index];
        }
      }
    });
    canvas.dataset.ready = "true";
  });
})();
