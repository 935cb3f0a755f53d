// The live events page: an EventSource on the console's own stream (session cookie), each
// event prepended as a row. Text is set with textContent only: event fields are never HTML.
(function () {
  var table = document.getElementById("live-events");
  if (!table) return;
  var body = table.tBodies[0];
  var status = document.getElementById("live-status");
  var KEEP = 200;
  function cell(row, text, code) {
    var td = row.insertCell();
    var inner = document.createElement(code ? "code" : "small");
    inner.textContent = text == null ? "" : String(text);
    td.appendChild(inner);
    return td;
  }
  function add(id, event) {
    var waiting = body.querySelector("tr.waiting");
    if (waiting) waiting.remove();
    var row = body.insertRow(0);
    cell(row, event.time || new Date().toISOString());
    cell(row, event.type, true);
    cell(row, event.id);
    cell(row, event.source);
    cell(row, id);
    var details = document.createElement("details");
    var summary = document.createElement("summary");
    summary.textContent = "show";
    var pre = document.createElement("pre");
    pre.textContent = JSON.stringify(event, null, 2);
    details.appendChild(summary);
    details.appendChild(pre);
    row.insertCell().appendChild(details);
    while (body.rows.length > KEEP) body.deleteRow(body.rows.length - 1);
  }
  var source = new EventSource(table.dataset.source);
  source.onopen = function () { status.textContent = "following"; };
  source.onerror = function () { status.textContent = "reconnecting…"; };
  source.addEventListener("error", function (message) {
    if (message.data) status.textContent = "ended: " + JSON.parse(message.data).reason;
  });
  source.onmessage = function (message) { add(message.lastEventId, JSON.parse(message.data)); };
})();
