// voucherd's pages: fill each cached form's CSRF field from the session's
// cookie, count down to a start, and follow a pending order.
(function () {
  "use strict";
  function cookie(name) {
    var found = document.cookie.split("; ").filter(function (pair) {
      return pair.indexOf(name + "=") === 0;
    })[0];
    return found ? decodeURIComponent(found.slice(name.length + 1)) : "";
  }
  var token = cookie("vd_csrf");
  document.querySelectorAll("input[data-csrf]").forEach(function (input) {
    input.value = token;
  });
  document.querySelectorAll("time[data-countdown]").forEach(function (element) {
    var at = Date.parse(element.getAttribute("datetime"));
    var shown = element.textContent;
    function tick() {
      var left = Math.max(0, Math.round((at - Date.now()) / 1000));
      if (left === 0) {
        // Spread the crowd's reloads over two seconds: the page may be
        // cached for two, and everyone's countdown ends at once.
        setTimeout(function () { location.reload(); }, 500 + Math.random() * 2000);
        return;
      }
      var h = Math.floor(left / 3600), m = Math.floor((left % 3600) / 60), s = left % 60;
      element.textContent = (h ? h + " h " : "") + m + " min " + s + " s (" + shown + ")";
      setTimeout(tick, 1000);
    }
    tick();
  });
  document.querySelectorAll("form[data-card-form]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      var number = form.querySelector("[name=number]").value.replace(/[\s-]/g, "");
      var sum = 0;
      for (var i = 0; i < number.length; i++) {
        var digit = +number[number.length - 1 - i];
        if (i % 2) { digit *= 2; if (digit > 9) digit -= 9; }
        sum += digit;
      }
      var fields = form.querySelectorAll("input[required]");
      var bad = null;
      fields.forEach(function (input) {
        var wrong = !input.checkValidity() ||
          (input.name === "number" && (!/^\d{12,19}$/.test(number) || sum % 10 !== 0));
        input.setAttribute("aria-invalid", wrong ? "true" : "false");
        if (wrong && !bad) bad = input;
      });
      if (bad) {
        event.preventDefault();
        var alert = form.querySelector("[data-client-error]");
        if (!alert) {
          alert = document.createElement("p");
          alert.className = "error";
          alert.setAttribute("role", "alert");
          alert.setAttribute("data-client-error", "");
          form.insertBefore(alert, form.firstChild);
        }
        alert.textContent = (bad.labels && bad.labels[0] ? bad.labels[0].textContent : bad.name) + ": " +
          (bad.name === "number" ? "not a valid card number" : "please check this field");
        bad.focus();
      }
    });
  });
  if (document.querySelector("[data-refresh]")) {
    setTimeout(function () { location.reload(); }, 1000);
  }
})();
