// The API reference page: Swagger UI reading the site's OpenAPI document.
(function () {
  "use strict";
  var target = document.getElementById("api-reference");
  SwaggerUIBundle({
    url: target.dataset.spec,
    domNode: target,
    deepLinking: true,
    tryItOutEnabled: false,
  });
})();
