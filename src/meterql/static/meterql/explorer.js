// GET /graphql from a browser: GraphiQL (vendored, see static/VERSIONS)
// against this server's /graphql.
//
// Every operation needs a bearer token. The token typed into the bar is kept
// in this browser's localStorage (until "Forget") and sent with each request,
// the schema's introspection included. A token in the Headers pane
// ({"Authorization": "Bearer …"}) wins over the bar's for that request.
// The token never goes into the URL, where logs and history would keep it.
//
// Nothing is sent before there is a token: the schema is read (GraphiQL's
// introspection) only once the server has accepted one, so a newcomer sees
// what to do, not a 401. A token is checked the moment it is set, with the
// smallest operation there is, and the bar says in words what the server
// made of it.
(function () {
  "use strict";

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

  var load = window.meterql.loadToken;
  var save = window.meterql.saveToken;

  function fetcherWith(token) {
    return function (params, options) {
      return window.meterql.postGraphQL(endpoint, token, params, options).then(
        function (response) {
          // Refusals (401, 413, …) are JSON too: {"detail": …} shows in the result pane.
          return response.json();
        }
      );
    };
  }

  // What the server makes of a token: "accepted", "refused" (401: unknown,
  // revoked or expired), "forbidden" (403: valid, but not allowed to read)
  // or "unreachable".
  function check(token) {
    return window.meterql.postGraphQL(endpoint, token, {
      query: "query TokenCheck { __typename }",
      operationName: "TokenCheck",
    }).then(
      function (response) {
        if (response.status === 401) return "refused";
        if (response.status === 403) return "forbidden";
        return response.ok ? "accepted" : "unreachable";
      },
      function () {
        return "unreachable";
      }
    );
  }

  var SAID = {
    none: "no token: paste one to load the schema and run operations",
    checking: "checking the token\u2026",
    accepted: "token accepted",
    refused: "token refused: the server does not know it, or it was revoked",
    forbidden: "token accepted, but it may not read (an ingest-only token?)",
    unreachable: "the server did not answer: try again",
  };

  var root = ReactDOM.createRoot(mount);
  var shown = 0; // which token check the page shows: a later one wins
  function show(token, verdict) {
    state.textContent = SAID[verdict];
    state.setAttribute("data-state", verdict);
    // A new fetcher makes GraphiQL read the schema again, now with the
    // token; schema null means "do not ask": no token, or a refused one.
    var props = {
      fetcher: fetcherWith(token),
      defaultQuery: DEFAULT_QUERY,
      isHeadersEditorEnabled: true,
      shouldPersistHeaders: false,
    };
    if (verdict !== "accepted") props.schema = null;
    root.render(React.createElement(GraphiQL, props));
  }
  function render() {
    var token = input.value.trim();
    var mine = ++shown;
    if (!token) {
      show("", "none");
      return;
    }
    show(token, "checking");
    check(token).then(function (verdict) {
      if (mine === shown) show(token, verdict);
    });
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
