// storefront pages: the only script. Pages work without it; it adds two conveniences.
// 1. <meta name="sf-refresh" content="N">: reload the page every N seconds (live lists,
//    an export being prepared), but never while the user is typing in a form.
// 2. <button data-print>: print the page (receipts).
(function () {
  "use strict";
  var meta = document.querySelector('meta[name="sf-refresh"]');
  if (meta) {
    var seconds = Math.max(2, parseInt(meta.getAttribute("content"), 10) || 10);
    setInterval(function () {
      var active = document.activeElement;
      var editing = active && /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName);
      if (!editing) { window.location.reload(); }
    }, seconds * 1000);
  }
  document.addEventListener("click", function (event) {
    var target = event.target;
    if (target && target.closest && target.closest("[data-print]")) {
      event.preventDefault();
      window.print();
    }
  });
})();
