// How the portal talks to whitebill: GraphQL over HTTP for queries and mutations, graphql-ws on the
// same path for live updates. The session token lives in this tab's sessionStorage and travels as a
// bearer token (never a cookie, never in the address).
import { createClient, type Client } from "graphql-ws";

const ENDPOINT = "/graphql";
const TOKEN_KEY = "whitebill.session";

export interface UserError {
  code: string;
  field: string | null;
  message: string;
}

export class ApiError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly field: string | null = null,
  ) {
    super(message);
  }
}

export function token(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function signedIn(value: string): void {
  sessionStorage.setItem(TOKEN_KEY, value);
  resetSocket();
}

export function signedOut(): void {
  sessionStorage.removeItem(TOKEN_KEY);
  resetSocket();
}

function authorization(): Record<string, string> {
  const value = token();
  return value ? { Authorization: `Bearer ${value}` } : {};
}

interface GraphQLAnswer<T> {
  data?: T;
  errors?: { message: string; extensions?: { code?: string } }[];
}

/** Runs an operation; a refusal of the whole request (UNAUTHENTICATED, say) is thrown as an ApiError. */
export async function gql<T>(query: string, variables: Record<string, unknown> = {}): Promise<T> {
  const response = await fetch(ENDPOINT, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json", ...authorization() },
    body: JSON.stringify({ query, variables }),
  });
  const answer = (await response.json()) as GraphQLAnswer<T>;
  const error = answer.errors?.[0];
  if (error) throw new ApiError(error.extensions?.code ?? "ERROR", error.message);
  if (!answer.data) throw new ApiError("ERROR", `HTTP ${response.status}`);
  return answer.data;
}

/** A mutation's payload, or its first user error thrown. */
export function settled<P extends { errors: UserError[] }>(payload: P): P {
  const error = payload.errors[0];
  if (error) throw new ApiError(error.code, error.message, error.field);
  return payload;
}

/** A new idempotency key: a retried click sends the same one, a new action a new one. */
export function newKey(): string {
  return crypto.randomUUID();
}

let socket: Client | null = null;

function resetSocket(): void {
  socket?.dispose();
  socket = null;
}

function theSocket(): Client {
  if (socket === null) {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    // Browsers cannot set headers on a websocket: the credentials travel in connection_init.
    socket = createClient({ url: `${scheme}://${location.host}${ENDPOINT}`, connectionParams: authorization() });
  }
  return socket;
}

/** Follows a subscription: ``onData`` gets the current state first, then each change. Returns the stop. */
export function live<T>(query: string, variables: Record<string, unknown>, onData: (data: T) => void): () => void {
  return theSocket().subscribe<T>(
    { query, variables },
    {
      next: (result) => {
        if (result.data) onData(result.data as T);
      },
      error: () => undefined,
      complete: () => undefined,
    },
  );
}
