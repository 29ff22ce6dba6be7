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
});
