// Starts Swagger UI on /docs. A file of its own because the panel's CSP forbids inline
// scripts, which is how FastAPI's stock docs page starts it.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const el = document.getElementById("swagger-ui");
  if (!el || typeof SwaggerUIBundle === "undefined") return;
  window.ui = SwaggerUIBundle({
    url: el.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    presets: [SwaggerUIBundle.presets.apis],
    deepLinking: true,
    validatorUrl: null,  // the default sends the schema to a public validator
  });
});
