// The dashboard's only channel to the gateway: `/graphql`, queries over HTTP POST and the live
// event stream over a graphql-ws websocket. Nothing else is fetched.
import { createClient, type Client } from 'graphql-ws';
import { bearer, graphqlHttpUrl, graphqlWsUrl } from '../shared/config';

export interface GraphQLError {
  message: string;
  path?: (string | number)[];
  extensions?: { code?: string };
}

export interface GraphQLResult<T> {
  data?: T | null;
  errors?: GraphQLError[];
}

/** The key was refused (HTTP 401): the user has to enter another one. */
export class KeyRefused extends Error {}

/** One query over HTTP. Field errors come back in `errors` beside the partial `data`. */
export async function query<T>(
  key: string,
  document: string,
  variables: Record<string, unknown> = {},
): Promise<GraphQLResult<T>> {
  const response = await fetch(graphqlHttpUrl(), {
    method: 'POST',
    headers: {
      Accept: 'application/graphql-response+json, application/json',
      'Content-Type': 'application/json',
      Authorization: bearer(key),
    },
    body: JSON.stringify({ query: document, variables }),
  });
  if (response.status === 401) throw new KeyRefused('the API key was refused');
  const body = (await response.json()) as GraphQLResult<T>;
  if (!body.data && body.errors?.length) {
    throw new Error(body.errors.map((e) => e.message).join('; '));
  }
  return body;
}

/** Whether an error of a response is a scope refusal (the key lacks e.g. `admin`). */
export function isForbidden(errors: GraphQLError[] | undefined): boolean {
  return (errors ?? []).some(
    (e) => e.extensions?.code === 'FORBIDDEN' || /forbidden|scope|permission/i.test(e.message),
  );
}

export type ConnectionState = 'connecting' | 'live' | 'reconnecting' | 'offline';

export interface StreamEvent {
  cursor: string;
  kind: string;
  sourceId?: string | null;
  entityType?: string;
  occurredAt?: string;
  recordedAt?: string;
  payload?: unknown;
  entity?: { id: string; __typename?: string } | null;
}

export interface StreamOptions {
  key: string;
  /** The `subscription` document; it takes `$after: String` (the resume cursor). */
  document: string;
  /** Other variables (e.g. a filter). */
  variables?: Record<string, unknown>;
  onEvent: (event: StreamEvent) => void;
  onState: (state: ConnectionState, detail?: string) => void;
  /** After a reconnect: the caller refreshes what it shows (the replay covers events). */
  onReconnected: () => void;
}

/** Failed connection attempts in a row after which the state shows `offline`. */
const OFFLINE_AFTER_FAILURES = 3;

/**
 * The live event stream: one graphql-ws subscription that survives reconnects and resumes
 * after the last cursor it delivered, so nothing committed in between is missed.
 *
 * graphql-ws re-sends the *same* subscribe payload object after every reconnect (checked in
 * graphql-ws 6.4 `client.js`, `subscribe()`), so the stream keeps `variables.after` of that
 * object at the last cursor seen: the server replays from there, then goes live. Events are
 * also de-duplicated by cursor, in case a replay overlaps what was already delivered.
 */
export class EventStream {
  private client: Client;
  private dispose: (() => void) | null = null;
  private retryTimer: number | null = null;
  private stopped = false;
  private everConnected = false;
  private failures = 0;
  private lastCursor: string | null = null;
  private readonly payload: { query: string; variables: Record<string, unknown> };
  private readonly onOnline = () => this.options.onState(this.everConnected ? 'reconnecting' : 'connecting');
  private readonly onOffline = () => this.options.onState('offline', 'the browser is offline');

  constructor(private readonly options: StreamOptions) {
    this.payload = {
      query: options.document,
      variables: { ...(options.variables ?? {}), after: null },
    };
    this.client = createClient({
      url: graphqlWsUrl(),
      connectionParams: () => ({ authorization: bearer(options.key) }),
      lazy: true,
      keepAlive: 10_000,
      retryAttempts: Number.POSITIVE_INFINITY,
      shouldRetry: () => !this.stopped,
      retryWait: async (retries) => {
        const base = Math.min(500 * 2 ** retries, 8_000);
        await new Promise((resolve) => setTimeout(resolve, base + Math.random() * 300));
      },
      on: {
        connecting: (isRetry) => {
          // Once offline, stay offline until a connection succeeds (retries go on meanwhile).
          if (!navigator.onLine || this.failures >= OFFLINE_AFTER_FAILURES) return;
          options.onState(isRetry || this.everConnected ? 'reconnecting' : 'connecting');
        },
        connected: (_socket, _payload, wasRetry) => {
          const reconnected = wasRetry || this.everConnected;
          this.everConnected = true;
          this.failures = 0;
          options.onState('live');
          if (reconnected) options.onReconnected();
        },
        closed: (event) => {
          if (this.stopped) return;
          this.failures += 1;
          const code = (event as CloseEvent | undefined)?.code;
          if (code === 4401 || code === 4403) {
            options.onState('offline', 'the API key was refused');
          } else if (!navigator.onLine || this.failures >= OFFLINE_AFTER_FAILURES) {
            options.onState('offline', 'the gateway does not answer; retrying');
          } else {
            options.onState('reconnecting');
          }
        },
      },
    });
    window.addEventListener('online', this.onOnline);
    window.addEventListener('offline', this.onOffline);
  }

  start(): void {
    if (this.stopped || this.dispose) return;
    this.dispose = this.client.subscribe<{ events: StreamEvent }>(this.payload, {
      next: (result) => {
        const event = result.data?.events;
        if (event) this.deliver(event);
        else if (result.errors?.length) {
          this.options.onState('reconnecting', result.errors.map((e) => e.message).join('; '));
        }
      },
      error: (error) => {
        // The server ended the subscription (or the socket closed for good): start over after
        // a pause, from the last cursor. A cursor the server no longer has (history pruned, or
        // a database reset) asks for a resync: reload everything and follow from now.
        this.dispose = null;
        const errors: GraphQLError[] = Array.isArray(error) ? error : [];
        const detail = errors.length ? errors.map((e) => e.message).join('; ') : 'subscription ended';
        if (errors.some(needsResync)) {
          this.lastCursor = null;
          this.payload.variables.after = null;
          this.options.onReconnected();
          this.scheduleRestart(500);
          return;
        }
        this.options.onState('offline', detail);
        this.scheduleRestart();
      },
      complete: () => {
        this.dispose = null;
        this.scheduleRestart();
      },
    });
  }

  stop(): void {
    this.stopped = true;
    if (this.retryTimer !== null) window.clearTimeout(this.retryTimer);
    this.dispose?.();
    this.dispose = null;
    window.removeEventListener('online', this.onOnline);
    window.removeEventListener('offline', this.onOffline);
    void this.client.dispose();
  }

  private scheduleRestart(delayMs = 5_000): void {
    if (this.stopped || this.retryTimer !== null) return;
    this.retryTimer = window.setTimeout(() => {
      this.retryTimer = null;
      this.start();
    }, delayMs);
  }

  private deliver(event: StreamEvent): void {
    if (this.lastCursor !== null && !isAfter(event.cursor, this.lastCursor)) return;
    this.lastCursor = event.cursor;
    this.payload.variables.after = event.cursor;
    this.options.onEvent(event);
  }
}

/** The server's answer to a cursor it cannot resume from (`extensions.resync`). */
function needsResync(error: GraphQLError): boolean {
  const extensions = error.extensions as { resync?: boolean } | undefined;
  return extensions?.resync === true || /resync/i.test(error.message);
}

/** Cursor order: numeric when both are numbers (as CareBridge's are), else "different". */
function isAfter(cursor: string, last: string): boolean {
  const a = Number(cursor);
  const b = Number(last);
  if (Number.isFinite(a) && Number.isFinite(b)) return a > b;
  return cursor !== last;
}
