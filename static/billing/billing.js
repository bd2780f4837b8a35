// Small enhancements; every page works without them.
document.addEventListener("click", function (event) {
  var button = event.target.closest("[data-copy]");
  if (!button) return;
  var source = document.getElementById(button.getAttribute("data-copy"));
  if (!source || !navigator.clipboard) return;
  navigator.clipboard.writeText(source.textContent.trim()).then(function () {
    button.textContent = "Copied";
  });
});
// The budget form shows only the target its scope needs.
(function () {
  var scope = document.getElementById("id_scope");
  if (!scope) return;
  var targets = { service_type: "id_service_type", product: "id_product", api_key: "id_api_key" };
  function update() {
    Object.keys(targets).forEach(function (name) {
      var field = document.getElementById(targets[name]);
      if (field && field.closest(".field")) field.closest(".field").hidden = scope.value !== name;
    });
  }
  scope.addEventListener("change", update);
  update();
})();
