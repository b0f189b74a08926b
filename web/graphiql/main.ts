// GraphiQL for whitebill, bundled and served by whitebill itself: it works with no internet and under
// a Content-Security-Policy that allows only this origin. Queries and mutations go over HTTP, live
// updates over graphql-transport-ws on the same path. The key goes in the headers editor (never in the
// URL), and is not kept in the browser's storage.
import { explorerPlugin } from "@graphiql/plugin-explorer";
import "@graphiql/plugin-explorer/dist/style.css";
import type { Fetcher, FetcherParams } from "@graphiql/toolkit";
import { GraphiQL } from "graphiql";
import "graphiql/graphiql.css";
import "./page.css";
import { getOperationAST, parse, type ExecutionResult } from "graphql";
import { createClient, type Client } from "graphql-ws";
import { createElement } from "react";
import { createRoot } from "react-dom/client";

const ENDPOINT = "/graphql";
const SOCKET_URL = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${ENDPOINT}`;

const HEADERS = `{
  "Authorization": "Bearer paste-an-api-key-or-a-session-token-here"
}`;

const QUERY = `# whitebill's GraphQL API. Put your API key (or the token \`login\` gives) in the
# Headers tab below, as "Authorization": "Bearer <key>"; never in the address.
# The Explorer (in the bar on the left) builds queries by clicking; the Docs list every type.
#
# Public, no key needed: how a brand's portal looks.
query Brand {
  branding(domain: "demo.localhost") {
    branding { displayName primaryColor }
  }
}
`;

function isSubscription(params: FetcherParams): boolean {
  try {
    return getOperationAST(parse(params.query), params.operationName ?? undefined)?.operation === "subscription";
  } catch {
    return false; // GraphQL answers a syntax error itself
  }
}

// Browsers cannot set headers on a websocket: the Authorization header travels in connection_init.
let socket: { authorization: string; client: Client } | null = null;

function socketFor(authorization: string): Client {
  if (socket === null || socket.authorization !== authorization) {
    socket?.client.dispose();
    const connectionParams = authorization ? { Authorization: authorization } : {};
    socket = { authorization, client: createClient({ url: SOCKET_URL, connectionParams, lazy: true }) };
  }
  return socket.client;
}

const fetcher: Fetcher = (params, options) => {
  const headers: Record<string, string> = {
    "Content-Type": "application/json",
    Accept: "application/graphql-response+json, application/json",
    ...(options?.headers ?? {}),
  };
  if (isSubscription(params)) {
    const authorization = headers.Authorization ?? headers.authorization ?? "";
    const results = socketFor(authorization).iterate({
      query: params.query,
      operationName: params.operationName ?? undefined,
      variables: params.variables ?? undefined,
    });
    // GraphiQL shows results as they arrive in JSON: formatted errors are what it prints.
    return results as unknown as AsyncIterable<ExecutionResult>;
  }
  return fetch(ENDPOINT, { method: "POST", headers, body: JSON.stringify(params) }).then((response) =>
    response.json(),
  );
};

const root = document.getElementById("graphiql");
if (root) {
  root.textContent = "";
  createRoot(root).render(
    createElement(GraphiQL, {
      fetcher,
      plugins: [explorerPlugin()],
      defaultQuery: QUERY,
      headers: HEADERS,
      shouldPersistHeaders: false,
      defaultEditorToolsVisibility: "headers",
      isHeadersEditorEnabled: true,
    }),
  );
}
