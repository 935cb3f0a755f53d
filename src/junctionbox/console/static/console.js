// Theme: the system's preference unless the user picked one with the toggle (kept locally).
(function () {
  var saved = localStorage.getItem("jb-theme");
  if (saved) document.documentElement.dataset.theme = saved;
})();
function jbToggleTheme() {
  var root = document.documentElement;
  var dark = root.dataset.theme
    ? root.dataset.theme === "dark"
    : window.matchMedia("(prefers-color-scheme: dark)").matches;
  root.dataset.theme = dark ? "light" : "dark";
  localStorage.setItem("jb-theme", root.dataset.theme);
}
function jbCopy(id, button) {
  var text = document.getElementById(id).textContent;
  navigator.clipboard.writeText(text).then(function () { button.textContent = "Copied"; });
}
function jbToggleAll(box) {
  document.querySelectorAll("input[name=ids]").forEach(function (c) { c.checked = box.checked; });
}
