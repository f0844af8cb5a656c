// The report page's script: builds each lab's filters from the embedded data (analysis/html.py), then draws the
// rows they let through. It writes only text nodes and properties: no text of the results becomes markup.
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("socklab-data").textContent);
  const S = data.strings;

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function breakable(text) {  // a long state such as LISTEN+ESTABLISHED may wrap after a "+"
    const node = el("span");
    text.split("+").forEach(function (part, i) { if (i) node.append("+", el("wbr")); node.append(part); });
    return node;
  }

  function tooltip(looks, look, caseId) {
    const lines = ["case " + caseId,
                   "measured: " + S[looks.text[look]] + " (verdict: " + S[looks.verdict[look]] + ")",
                   "expected: " + (S[looks.expected[look]] || "no documented expectation")];
    if (S[looks.source[look]]) lines.push("source: " + S[looks.source[look]]);
    lines.push("witness: " + (S[looks.witness[look]] || "(nothing seen)"));
    if (S[looks.detail[look]]) lines.push("detail: " + S[looks.detail[look]]);
    return lines.join("\n");
  }

  function showLab(lab) {
    const root = document.getElementById(lab.section);
    const head = root.querySelector("thead"), body = root.querySelector("tbody");
    const status = root.querySelector(".status");
    const width = lab.columns.length, rowCount = lab.rows.system.length;
    const hostFilter = {name: "host", label: "host", values: lab.hosts, default: -1,
                        valueOf: function (row) { return lab.systems.host[lab.rows.system[row]]; }};
    const filters = [hostFilter].concat(lab.axes.map(function (axis) {
      return {name: axis.name, label: axis.label, values: axis.values, default: axis.default, axis: axis,
              valueOf: function (row) { return lab.shapes[axis.name][lab.rows.shape[row]]; }};
    }));
    filters.forEach(function (filter) {
      const label = el("label", null, filter.label);
      filter.box = el("select");
      filter.box.name = filter.name;
      filter.box.append(new Option("(all)", "-1"));
      filter.values.forEach(function (value, i) { filter.box.append(new Option(S[value], String(i))); });
      filter.box.value = String(filter.default);
      filter.box.addEventListener("change", draw);
      label.append(filter.box);
      root.querySelector(".filters").append(label);
    });

    function caseId(row, column) {
      const parts = lab.cases[lab.caseGrid[lab.rows.shape[row] * width + column] - 1];
      return parts.map(function (part) { return S[part]; }).join(data.caseIdSeparator);
    }

    function cell(row, column) {
      const code = lab.cells[row * width + column];
      if (code === 0) {
        const td = el("td", "m-none", lab.empty);
        td.title = lab.empty ? "not measured" : "not a step of this case";
        return td;
      }
      const looks = lab.looks, look = code - 1;
      const td = el("td", "m-" + data.meanings[looks.meaning[look]], S[looks.text[look]]);
      if (td.textContent.length > 24) td.classList.add("long");
      if (S[looks.verdict[look]] === "mismatch") td.classList.add("mismatch");
      td.title = tooltip(looks, look, caseId(row, column));
      return td;
    }

    function draw() {
      filters.forEach(function (filter) { filter.chosen = Number(filter.box.value); });
      const shown = [];
      for (let row = 0; row < rowCount; row++) {
        if (filters.every(function (f) { return f.chosen < 0 || f.valueOf(row) === f.chosen; })) shown.push(row);
      }
      const columns = lab.columns.map(function (_, c) { return c; }).filter(function (c) {
        return shown.some(function (row) { return lab.cells[row * width + c] > 0; });
      });
      const axes = filters.filter(function (f) { return f.axis && f.chosen < 0; }).map(function (f) { return f.axis; });

      const headRow = el("tr");
      headRow.append(el("th", null, "system"));
      axes.forEach(function (axis) { headRow.append(el("th", null, axis.label)); });
      columns.forEach(function (c) {
        const th = el("th");
        th.append(breakable(S[lab.columns[c]]));
        headRow.append(th);
      });
      head.replaceChildren(headRow);

      const drawn = shown.slice(0, data.maxRows), rows = document.createDocumentFragment();
      let previous = -1;
      drawn.forEach(function (row) {
        const system = lab.rows.system[row], tr = el("tr", system === previous ? null : "group");
        const name = el("th", system === previous ? "again" : null, S[lab.systems.label[system]]);
        name.scope = "row";
        tr.append(name);
        axes.forEach(function (axis) {
          const th = el("th", null, S[axis.values[lab.shapes[axis.name][lab.rows.shape[row]]]]);
          th.scope = "row";
          tr.append(th);
        });
        columns.forEach(function (c) { tr.append(cell(row, c)); });
        previous = system;
        rows.append(tr);
      });
      body.replaceChildren(rows);
      status.textContent = shown.length + " of " + rowCount + " rows" + (shown.length > drawn.length ?
        "; the first " + drawn.length + " are drawn: narrow the filters to see the others." : ".");
    }
    draw();
  }

  data.labs.forEach(showLab);
})();
