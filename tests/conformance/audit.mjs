#!/usr/bin/env node
// GraphQL-over-HTTP conformance audit (graphql-http's auditServer) against a running server.
//
//   node audit.mjs [--json] [--authorization VALUE] [URL]
//
// URL defaults to $GRAPHQL_URL, then http://127.0.0.1:8000/graphql.
// --authorization (or $GRAPHQL_AUTHORIZATION) is sent as the Authorization header of every
// audit request, e.g. "Bearer wb_...". Without it the audit runs unauthenticated.
// --json prints one JSON object per result on stdout; the default is a readable table.
// Exit status: 0 when no result is an error (warnings and notices are allowed),
// 1 when at least one MUST audit failed, 2 on bad usage or a fatal failure (server unreachable).

import { parseArgs } from 'node:util';
import { auditServer } from 'graphql-http';

const REQUEST_TIMEOUT_MS = 10_000;
const BODY_PREVIEW_CHARS = 500;

function usage(message) {
  if (message) console.error(`audit.mjs: ${message}`);
  console.error('usage: node audit.mjs [--json] [--authorization VALUE] [URL]');
  process.exit(2);
}

let args;
try {
  args = parseArgs({
    allowPositionals: true,
    options: {
      json: { type: 'boolean', default: false },
      authorization: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
} catch (error) {
  usage(error.message);
}
if (args.values.help) usage();
if (args.positionals.length > 1) usage('at most one URL');

const url = args.positionals[0] || process.env.GRAPHQL_URL || 'http://127.0.0.1:8000/graphql';
const authorization = args.values.authorization ?? process.env.GRAPHQL_AUTHORIZATION ?? '';
try {
  new URL(url);
} catch {
  usage(`not a URL: ${url}`);
}

// The audit's own headers are kept; Authorization is added only when given, and every request
// is bounded so a hung server fails the audit instead of hanging it.
async function fetchFn(input, init = {}) {
  const headers = new Headers(init.headers);
  if (authorization && !headers.has('authorization')) headers.set('authorization', authorization);
  return fetch(input, { ...init, headers, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
}

// What the server answered to a failed audit, so a failure can be diagnosed from the output alone.
async function describeResponse(response) {
  if (!response) return undefined;
  let body = null;
  if (!response.bodyUsed) {
    try {
      body = await response.text();
      if (body.length > BODY_PREVIEW_CHARS) body = `${body.slice(0, BODY_PREVIEW_CHARS)}...`;
    } catch (error) {
      body = `<unreadable: ${error.message}>`;
    }
  }
  return { status: response.status, contentType: response.headers.get('content-type'), body };
}

let results;
const started = performance.now();
try {
  results = await auditServer({ url, fetchFn });
} catch (error) {
  console.error(`audit.mjs: the audit could not run against ${url}: ${error.cause?.message ?? error.message}`);
  process.exit(2);
}
const elapsedMs = Math.round(performance.now() - started);

const rows = [];
for (const result of results) {
  const row = { id: result.id, name: result.name, status: result.status, reason: result.reason ?? null };
  if (result.status !== 'ok') row.response = await describeResponse(result.response);
  rows.push(row);
}

const order = { error: 0, warn: 1, notice: 2, ok: 3 };
rows.sort((a, b) => order[a.status] - order[b.status] || a.name.localeCompare(b.name));
const counts = { ok: 0, notice: 0, warn: 0, error: 0 };
for (const row of rows) counts[row.status] += 1;

if (args.values.json) {
  for (const row of rows) console.log(JSON.stringify(row));
} else {
  const label = { ok: 'ok', notice: 'notice', warn: 'WARN', error: 'ERROR' };
  for (const row of rows) {
    console.log(`${label[row.status].padEnd(6)}  ${row.id}  ${row.name}`);
    if (row.status !== 'ok') {
      console.log(`        reason: ${row.reason}`);
      const r = row.response;
      const body = (r?.body ?? '').replace(/\s+/g, ' ');
      if (r) console.log(`        got: ${r.status} ${r.contentType ?? '(no content-type)'} ${body}`.trimEnd());
    }
  }
}
console.error(
  `graphql-http audit of ${url}: ${rows.length} audits, ${counts.ok} ok, ${counts.notice} notices, ` +
    `${counts.warn} warnings, ${counts.error} errors (${elapsedMs} ms)`,
);
process.exit(counts.error > 0 ? 1 : 0);
