// The live dashboard: one server-sent event a second with the campaign's
// report; numbers, the claims line and the tables follow it.
(function () {
  "use strict";
  var root = document.getElementById("dashboard");
  if (!root) return;
  var status = document.getElementById("live-status");
  function set(id, text) { document.getElementById(id).textContent = text; }
  function number(n) { return (n === null || n === undefined) ? "no limit" : n.toLocaleString(); }
  function cell(row, text) { var td = document.createElement("td"); td.textContent = text; row.appendChild(td); }
  var source = new EventSource(root.getAttribute("data-events"));
  source.addEventListener("snapshot", function (message) {
    var data = JSON.parse(message.data), report = data.report, node = data.node;
    var seconds = report.claims_per_second;
    var last = seconds.length ? seconds[seconds.length - 1] : null;
    var fresh = last && (Date.now() - Date.parse(last.at)) < 3000;
    set("rate", fresh ? number(last.claims) : "0");
    set("issued", number(report.issued_total));
    set("reserved", number(report.reserved));
    set("available", number(report.available));
    set("pending", number(report.orders.pending));
    set("paid", number(report.orders.paid) + " / " + number(report.orders.failed));
    set("queue", number(node.claim_queue_depth));
    set("refused", number(node.sold_out + node.refused) + " / " + number(node.claims_shed));
    // Every second of the last two minutes, those without claims at 0.
    var now = Math.floor(Date.now() / 1000), counts = {}, max = 1, points = [];
    seconds.forEach(function (second) {
      counts[Math.floor(Date.parse(second.at) / 1000)] = second.claims;
      max = Math.max(max, second.claims);
    });
    for (var age = 120; age >= 0; age--) {
      var claims = counts[now - age] || 0;
      points.push(((120 - age) * 5) + "," + (155 - claims / max * 145).toFixed(1));
    }
    document.getElementById("line").setAttribute("points", points.join(" "));
    set("chart-max", "peak " + number(max) + "/s");
    var tiers = document.getElementById("tiers");
    tiers.textContent = "";
    report.by_tier.forEach(function (tier) {
      var row = document.createElement("tr");
      cell(row, tier.first_rank + "–" + (tier.last_rank === null ? "…" : tier.last_rank));
      cell(row, tier.discount_percent + " %");
      cell(row, number(tier.available)); cell(row, number(tier.reserved)); cell(row, number(tier.issued));
      tiers.appendChild(row);
    });
    var gateways = document.getElementById("gateways");
    gateways.textContent = "";
    report.payments.forEach(function (payment) {
      var row = document.createElement("tr");
      cell(row, payment.gateway); cell(row, payment.outcome); cell(row, number(payment.count));
      gateways.appendChild(row);
    });
    status.textContent = "Live, updated " + new Date().toLocaleTimeString();
    root.setAttribute("data-updates", String(+(root.getAttribute("data-updates") || 0) + 1));
  });
  source.addEventListener("error", function () { status.textContent = "Reconnecting…"; });
})();
