// The legend of the result on the map: each class as "Name (count)" with its colour, and download buttons for
// the formats the server offers.

import { legendRows, legendText } from "./style.js";

const $ = (id) => document.getElementById(id);

export function showLegend({ title, classes, counts, formats = [], onDownload }) {
  const { rows, total } = legendRows(classes, counts);
  $("legend-title").textContent = title;
  const list = $("legend-rows");
  list.replaceChildren(
    ...rows.map((row) => {
      const item = document.createElement("li");
      item.dataset.class = row.name;
      item.dataset.count = String(row.count);
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = row.color;
      swatch.setAttribute("aria-hidden", "true");
      const text = document.createElement("span");
      text.className = "legend-text";
      text.textContent = legendText(row);
      item.append(swatch, text);
      return item;
    }),
  );
  $("legend-total").textContent = `${total.toLocaleString("en-US")} features`;
  const box = $("downloads");
  box.replaceChildren(
    ...formats.map((fmt) => {
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.format = fmt;
      button.textContent = `Download ${fmt.toUpperCase()}`;
      button.addEventListener("click", () => onDownload(fmt, button));
      return button;
    }),
  );
  $("legend").hidden = false;
}

export function hideLegend() {
  $("legend").hidden = true;
}
