// GET /graphql from a browser: GraphiQL (vendored, see static/VERSIONS)
// against this server's /graphql.
//
// Every operation needs a bearer token. The token typed into the bar is kept
// in this browser's localStorage (until "Forget") and sent with each request,
// the schema's introspection included. A token in the Headers pane
// ({"Authorization": "Bearer …"}) wins over the bar's for that request.
// The token never goes into the URL, where logs and history would keep it.
(function () {
  "use strict";

  var KEY = "meterql.token";
  var DEFAULT_QUERY = [
    "# Paste a token into the bar above (it stays in this browser), or send",
    '# {"Authorization": "Bearer <token>"} from the Headers pane below.',
    "query Summary {",
    "  metricsSummary(days: 7) {",
    "    periodDays",
    "    totalRequests",
    "    totalTokens",
    "    estimatedCostUsd",
    "  }",
    "}",
    "",
  ].join("\n");

  var mount = document.getElementById("graphiql");
  var endpoint = mount.getAttribute("data-endpoint");
  var input = document.getElementById("mq-token");
  var forget = document.getElementById("mq-forget");
  var state = document.getElementById("mq-token-state");

  // localStorage may be refused (private modes, storage policies): the token
  // then lasts as long as the page.
  function load() {
    try {
      return window.localStorage.getItem(KEY) || "";
    } catch (e) {
      return "";
    }
  }
  function save(token) {
    try {
      if (token) window.localStorage.setItem(KEY, token);
      else window.localStorage.removeItem(KEY);
    } catch (e) {
      /* kept for this page only */
    }
  }

  function fetcherWith(token) {
    return function (params, options) {
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
        body: JSON.stringify(params),
        credentials: "omit",
      }).then(function (response) {
        // Refusals (401, 413, …) are JSON too: {"detail": …} shows in the result pane.
        return response.json();
      });
    };
  }

  var root = ReactDOM.createRoot(mount);
  function render() {
    var token = input.value.trim();
    state.textContent = token ? "token set" : "no token: operations answer 401";
    // A new fetcher makes GraphiQL introspect again, now with the token.
    root.render(
      React.createElement(GraphiQL, {
        fetcher: fetcherWith(token),
        defaultQuery: DEFAULT_QUERY,
        isHeadersEditorEnabled: true,
        shouldPersistHeaders: false,
      })
    );
  }

  input.value = load();
  input.addEventListener("change", function () {
    save(input.value.trim());
    render();
  });
  forget.addEventListener("click", function () {
    input.value = "";
    save("");
    render();
  });
  render();
})();
