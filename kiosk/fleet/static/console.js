// The console's few behaviours that need a script (every page works without it): charts from the data the
// server put in a data- attribute, a site selector that follows its choice, and a bounded live feed.
(function () {
  "use strict";
  var MAX_FEED_ROWS = 200;
  function charts() {
    if (typeof Chart === "undefined") { return; }
    document.querySelectorAll("canvas.chart[data-chart]").forEach(function (canvas) {
      if (canvas.dataset.drawn) { return; }
      var spec = JSON.parse(canvas.dataset.chart);
      var colours = ["#1b873f", "#0b5cad", "#c77700", "#b00020"];
      new Chart(canvas, {
        type: "bar",
        data: { labels: spec.labels, datasets: spec.series.map(function (s, i) {
          return { label: s.label, data: s.data, backgroundColor: colours[i % colours.length] };
        }) },
        options: { responsive: true, maintainAspectRatio: false, animation: false,
                   scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } }
      });
      canvas.dataset.drawn = "1";
    });
  }
  function trimFeed() {
    var feed = document.getElementById("feed");
    while (feed && feed.children.length > MAX_FEED_ROWS) { feed.removeChild(feed.lastElementChild); }
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
      select.addEventListener("change", function () { select.form.submit(); });
    });
    charts();
  });
  document.addEventListener("htmx:afterSwap", trimFeed);
  document.addEventListener("htmx:sseMessage", trimFeed);
})();
