// Starts GraphiQL on this server's /graphql (was an inline <script>; the page's
// Content-Security-Policy runs only files served by the app). The settings (default
// document, headers, variables) come from the page's JSON data block.
(function () {
  "use strict";
  const settings = JSON.parse(document.getElementById("graphiql-settings").textContent);
  const url = window.location.href.split("?")[0].split("#")[0];
  const subscriptionUrl = url.replace(/^http/, "ws");
  const fetcher = GraphiQL.createFetcher({ url, subscriptionUrl });

  // The prefilled placeholder is not a token: leave it out rather than have the
  // server refuse a malformed Authorization header.
  function withoutPlaceholder(opts) {
    const headers = Object.assign({}, (opts && opts.headers) || {});
    for (const name of Object.keys(headers)) {
      if (String(headers[name]).includes(settings.placeholder)) delete headers[name];
    }
    return Object.assign({}, opts || {}, { headers });
  }

  function ordersFetcher(params, opts) {
    return fetcher(params, withoutPlaceholder(opts));
  }

  ReactDOM.createRoot(document.getElementById("graphiql")).render(
    React.createElement(GraphiQL, {
      fetcher: ordersFetcher,
      defaultQuery: settings.query,
      defaultHeaders: settings.headers,
      defaultVariables: settings.variables,
      defaultEditorToolsVisibility: "headers",
      isHeadersEditorEnabled: true,
      shouldPersistHeaders: false,
      inputValueDeprecation: true,
    }),
  );
})();
