// Copy buttons: <button data-copy="ID"> copies the value (or text) of element ID. A static
// file, not an onclick attribute: the Content-Security-Policy allows no inline script.
(function () {
  "use strict";
  function copied(button, words) {
    button.textContent = words;
    setTimeout(() => { button.textContent = "Copy"; }, 2000);
  }
  document.addEventListener("click", (event) => {
    const button = event.target.closest && event.target.closest("button[data-copy]");
    if (!button) return;
    const source = document.getElementById(button.dataset.copy);
    if (!source) return;
    const text = "value" in source ? source.value : source.textContent;
    if (source.select) source.select(); // selected either way: Ctrl+C works if the API does not
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(
        () => copied(button, "Copied"),
        () => copied(button, document.execCommand("copy") ? "Copied" : "Press Ctrl+C"),
      );
    } else {
      copied(button, document.execCommand("copy") ? "Copied" : "Press Ctrl+C");
    }
  });
})();
