// Loaded between require.js and the widget manager (nb_ipywidgets_js in _config.yml).
(function () {
  // The manager finds its fonts next to the module "@jupyter-widgets/html-manager/dist/...",
  // which require.js resolves against the page; point that name at the book's own copy.
  var here = document.currentScript.src;
  require.config({paths: {
    "@jupyter-widgets/html-manager/dist": new URL("vendor/html-manager", here).href.replace(/\/$/, ""),
  }});

  // ipywidgets typesets its labels with MathJax 2's MathJax.Hub.Queue(["Typeset", Hub, element]);
  // the book uses MathJax 3, which has no Hub: typeset the element with MathJax 3 instead.
  function bridge() {
    var mj = window.MathJax;
    if (mj && mj.startup && !mj.Hub) {
      mj.Hub = {Queue: function (job) {
        return mj.startup.promise.then(function () { return mj.typesetPromise([job[2]]); });
      }};
    }
  }
  document.addEventListener("DOMContentLoaded", bridge);
})();
