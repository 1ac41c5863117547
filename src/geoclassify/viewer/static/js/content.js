// My Content's results: name, date, model and class counts, with Show, Evaluate, Rename and Delete.

import { api } from "./api.js";

function countsText(counts = {}) {
  const parts = Object.entries(counts)
    .filter(([k]) => k !== "")
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${Number(v).toLocaleString("en-US")}`);
  if (counts[""]) parts.push(`unclassified ${Number(counts[""]).toLocaleString("en-US")}`);
  return parts.join(", ") || "no features";
}

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

function button(text, label, onClick) {
  const node = document.createElement("button");
  node.type = "button";
  node.textContent = text;
  node.setAttribute("aria-label", label);
  node.addEventListener("click", onClick);
  return node;
}

export function renderContent(table, results, { onShow, onEvaluate, onChanged, onError }) {
  const body = table.tBodies[0];
  if (!results.length) {
    const row = document.createElement("tr");
    const td = cell("No results yet: run the tool.");
    td.colSpan = 5;
    row.append(td);
    body.replaceChildren(row);
    return;
  }
  body.replaceChildren(
    ...results.map((r) => {
      const row = document.createElement("tr");
      row.dataset.itemId = r.itemId;
      const name = cell(r.name);
      name.className = "name";
      const date = new Date(r.created * 1000);
      const when = cell(date.toLocaleString("en-GB", { dateStyle: "short", timeStyle: "short" }));
      when.title = date.toISOString();
      const actions = document.createElement("td");
      actions.className = "actions";
      actions.append(
        button("Show", `Show ${r.name} on the map`, () => onShow(r)),
        button("Evaluate", `Evaluate ${r.name} against a truth field`, (event) => onEvaluate(r, event.currentTarget)),
        button("Rename", `Rename ${r.name}`, () => startRename(row, name, r, onChanged, onError)),
        button("Delete", `Delete ${r.name}`, async () => {
          if (!globalThis.confirm(`Delete the result "${r.name}" from My Content?`)) return;
          try {
            await api(`/api/items/${r.itemId}`, { method: "DELETE" });
            onChanged({ deleted: r });
          } catch (err) {
            onError(err.message);
          }
        }),
      );
      row.append(name, when, cell(r.result?.model || "-"), cell(countsText(r.result?.counts)), actions);
      return row;
    }),
  );
}

function startRename(row, nameCell, result, onChanged, onError) {
  const form = document.createElement("form");
  form.className = "rename";
  const id = `rename-${result.itemId}`;
  const label = document.createElement("label");
  label.htmlFor = id;
  label.className = "sr";
  label.textContent = `New name for ${result.name}`;
  const input = document.createElement("input");
  input.id = id;
  input.name = "name";
  input.value = result.name;
  input.size = 14;
  const save = document.createElement("button");
  save.type = "submit";
  save.textContent = "Save";
  const cancel = button("Cancel", "Cancel renaming", () => nameCell.replaceChildren(result.name));
  form.append(label, input, save, cancel);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api(`/api/items/${result.itemId}`, { method: "PATCH", json: { name: input.value } });
      onChanged({ renamed: result, name: input.value });
    } catch (err) {
      onError(err.message);
      input.setAttribute("aria-invalid", "true");
      input.focus();
    }
  });
  nameCell.replaceChildren(form);
  input.focus();
  input.select();
}
