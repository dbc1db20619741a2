// What the dashboard and the explorer share: where the bearer token is kept
// (this browser's localStorage, one key for both pages, until "Forget"), and
// how a page asks /graphql with it. The token never goes into a URL, where
// logs and history would keep it, and no cookie is ever sent.
(function () {
  "use strict";

  var KEY = "meterql.token";

  window.meterql = {
    // localStorage may be refused (private modes, storage policies): the
    // token then lasts as long as the page.
    loadToken: function () {
      try {
        return window.localStorage.getItem(KEY) || "";
      } catch (e) {
        return "";
      }
    },
    saveToken: function (token) {
      try {
        if (token) window.localStorage.setItem(KEY, token);
        else window.localStorage.removeItem(KEY);
      } catch (e) {
        /* kept for this page only */
      }
    },
    // A GraphQL POST: ``body`` is {query, operationName?, variables?};
    // ``headers`` may add to (or, for Authorization, replace) the page's own.
    postGraphQL: function (endpoint, token, body, options) {
      var extra = (options && options.headers) || {};
      var headers = { "Content-Type": "application/json", Accept: "application/json" };
      var named = Object.keys(extra).some(function (name) {
        return name.toLowerCase() === "authorization";
      });
      if (token && !named) headers.Authorization = "Bearer " + token;
      Object.keys(extra).forEach(function (name) {
        headers[name] = extra[name];
      });
      return fetch(endpoint, {
        method: "POST",
        headers: headers,
        body: JSON.stringify(body),
        credentials: "omit",
        signal: options && options.signal,
      });
    },
  };
})();
