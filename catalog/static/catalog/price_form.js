// Price page: show only the fieldsets that apply to the chosen price model (standard, package,
// graduated, volume, percentage, dynamic). A section holding an error or existing rows stays
// visible, so a message about a field never hides with it.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  const select = document.getElementById("id_model");
  if (!select) {
    return;
  }
  function hasErrors(element) {
    return element.querySelector(".errorlist") !== null;
  }
  function hasRows(group) {
    return group.querySelectorAll("tr.form-row:not(.empty-form)").length > 0;
  }
  function showSectionsFor(model) {
    document.querySelectorAll("fieldset.price-model").forEach(function (fieldset) {
      fieldset.hidden = !fieldset.classList.contains("model-" + model) && !hasErrors(fieldset);
    });
    const groups = { "tiers-group": ["graduated", "volume"], "dynamic_rates-group": ["dynamic"] };
    Object.entries(groups).forEach(function ([id, models]) {
      const group = document.getElementById(id);
      if (group) {
        group.hidden = !models.includes(model) && !hasRows(group) && !hasErrors(group);
      }
    });
  }
  select.addEventListener("change", function () {
    showSectionsFor(select.value);
  });
  showSectionsFor(select.value);

  // "Price per": rates are typed per unit, per 1K or per 1M. Switching the scale rewrites the rates
  // already typed so they keep their meaning ($0.000002 per unit becomes $0.002 per 1K); the shift is
  // done on the decimal text, never through floating point.
  const scale = document.getElementById("id_rate_per");
  if (!scale) {
    return;
  }
  const rateName = /^(unit_price|min_unit_price|max_unit_price|(tiers|dynamic_rates)-\d+-unit_price|dimensional_rates_price_\d+)$/;
  function shiftDecimal(text, digits) {
    const match = /^\s*(-?)(\d*)(?:\.(\d*))?\s*$/.exec(text);
    if (!match || (match[2] === "" && !match[3])) {
      return text;
    }
    const sign = match[1];
    const whole = match[2];
    let all = whole + (match[3] || "");
    let point = whole.length + digits;
    if (point < 0) {
      all = "0".repeat(-point) + all;
      point = 0;
    }
    if (point > all.length) {
      all += "0".repeat(point - all.length);
    }
    const integer = all.slice(0, point).replace(/^0+/, "") || "0";
    const fraction = all.slice(point).replace(/0+$/, "");
    return sign + integer + (fraction ? "." + fraction : "");
  }
  let previous = scale.value;
  scale.addEventListener("change", function () {
    const digits = scale.value.length - previous.length; // 1 → 1000: +3 digits
    previous = scale.value;
    document.querySelectorAll("input").forEach(function (input) {
      if (rateName.test(input.name) && input.value !== "") {
        input.value = shiftDecimal(input.value, digits);
      }
    });
  });
});

// Rates per event property: each value column is labelled by the property typed above it, as it is typed.
// A second or third column shows once its property is named (or holds values); without this script every
// column is simply shown.
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll(".dimensional-rates").forEach(function (editor) {
    const inputs = Array.from(editor.querySelectorAll(".dimensional-rates-properties input"));
    function cells(column) {
      return editor.querySelectorAll('[data-value-column="' + column + '"]');
    }
    function hasValues(column) {
      return Array.from(cells(column)).some(function (cell) {
        const input = cell.querySelector("input");
        return input !== null && input.value.trim() !== "";
      });
    }
    function refresh() {
      inputs.forEach(function (input, column) {
        const name = input.value.trim();
        const shown = column === 0 || name !== "" || hasValues(column);
        cells(column).forEach(function (cell) {
          cell.hidden = !shown;
          if (cell.tagName === "TH") {
            cell.textContent = name || cell.dataset.blankHeading;
          }
        });
        // a property's box shows when the one before it is named, so the third waits for the second
        const previous = column === 0 ? "x" : inputs[column - 1].value.trim();
        input.closest("[data-property-column]").hidden = !shown && previous === "";
      });
    }
    inputs.forEach(function (input) {
      input.addEventListener("input", refresh);
    });
    refresh();
  });
});
