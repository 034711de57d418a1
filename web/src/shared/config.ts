// What both pages share: where /graphql is, and the API key the user typed (kept in this
// browser's localStorage only, never in the URL, so it does not end up in logs or history).

const KEY_STORAGE = 'carebridge.apiKey';

/** `/graphql` on the origin that served the page (the pages talk to nothing else). */
export function graphqlHttpUrl(): string {
  return new URL('/graphql', window.location.href).toString();
}

/** The same endpoint as a websocket URL (ws: or wss: after the page's own scheme). */
export function graphqlWsUrl(): string {
  const url = new URL('/graphql', window.location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.toString();
}

export function loadApiKey(): string {
  try {
    return window.localStorage.getItem(KEY_STORAGE) ?? '';
  } catch {
    return '';
  }
}

export function saveApiKey(key: string): void {
  try {
    if (key) window.localStorage.setItem(KEY_STORAGE, key);
    else window.localStorage.removeItem(KEY_STORAGE);
  } catch {
    // Private mode or storage disabled: the key lives for this page only.
  }
}

/** The `Authorization` value for a key. */
export function bearer(key: string): string {
  return `Bearer ${key}`;
}

/** A clinic-local calendar day as `YYYY-MM-DD` in the browser's own zone. */
export function localDay(date: Date = new Date()): string {
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

export function browserTimeZone(): string {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
}
