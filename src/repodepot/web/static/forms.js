// Forms that ask before they act: <form data-confirm="Question?">. A static file, not an
// onsubmit attribute: the Content-Security-Policy allows no inline script.
(function () {
  "use strict";
  document.addEventListener("submit", (event) => {
    const question = event.target.dataset && event.target.dataset.confirm;
    if (question && !window.confirm(question)) event.preventDefault();
  });
})();
