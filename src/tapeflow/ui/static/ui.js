// Auto-refresh: every few seconds, swap #live for the same part of a fresh copy of the page
// (rendered and escaped by the server, like the first). Stops when the page says it is done.
(function () {
  "use strict";
  const live = document.getElementById("live");
  const toggle = document.getElementById("auto-refresh");
  if (!live || !live.dataset.refresh) {
    if (toggle) toggle.parentElement.hidden = true;
    return;
  }
  const every = Number(live.dataset.refresh) * 1000;
  async function tick() {
    if (toggle.checked) {
      try {
        const response = await fetch(location.href, { credentials: "same-origin" });
        if (response.ok) {
          const page = new DOMParser().parseFromString(await response.text(), "text/html");
          const fresh = page.getElementById("live");
          if (fresh) {
            live.replaceChildren(...fresh.childNodes);
            if (!fresh.dataset.refresh) {
              location.reload(); // finished: actions change too
              return;
            }
          }
        }
      } catch (error) {
        // the server is restarting, say: try again next time
      }
    }
    setTimeout(tick, every);
  }
  setTimeout(tick, every);
})();
