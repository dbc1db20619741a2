// GET /v1/docs: Swagger UI (vendored, see static/VERSIONS) over
// /v1/openapi.json. Each operation's description shows its fixed GraphQL
// document. "Authorize" takes a bearer token for "Try it out"; it is kept in
// this browser's localStorage until "Logout".
(function () {
  "use strict";

  var mount = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: mount.getAttribute("data-spec"),
    domNode: mount,
    // The default asks a public validator service for a badge: no network here.
    validatorUrl: null,
    deepLinking: true,
    persistAuthorization: true,
    docExpansion: "list",
    defaultModelsExpandDepth: 0,
  });
})();
