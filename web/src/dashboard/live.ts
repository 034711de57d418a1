// React glue: the live stream's connection state, and coalesced refreshes of query panels.
import { useEffect, useRef, useState } from 'react';
import { EventStream, type ConnectionState, type StreamEvent } from './api';

export interface LiveStatus {
  state: ConnectionState;
  detail?: string;
}

/** Runs one [`EventStream`] for the component's lifetime (restarted when `key` changes). */
export function useEventStream(
  key: string,
  document: string,
  variables: Record<string, unknown> | undefined,
  onEvent: (event: StreamEvent) => void,
  onReconnected: () => void,
): LiveStatus {
  const [status, setStatus] = useState<LiveStatus>({ state: 'connecting' });
  const handlers = useRef({ onEvent, onReconnected });
  handlers.current = { onEvent, onReconnected };
  const variablesText = JSON.stringify(variables ?? {});
  useEffect(() => {
    const stream = new EventStream({
      key,
      document,
      variables: JSON.parse(variablesText) as Record<string, unknown>,
      onEvent: (event) => handlers.current.onEvent(event),
      onReconnected: () => handlers.current.onReconnected(),
      onState: (state, detail) => setStatus({ state, detail }),
    });
    stream.start();
    return () => stream.stop();
  }, [key, document, variablesText]);
  return status;
}

/**
 * `schedule(name, delay)` runs the loader `name` once after `delay` ms, however many times it
 * was asked for meanwhile (a burst of webhooks refetches a panel once).
 */
export function useRefresher(loaders: Record<string, () => Promise<void>>) {
  const current = useRef(loaders);
  current.current = loaders;
  const timers = useRef(new Map<string, number>());
  useEffect(() => {
    const pending = timers.current;
    return () => {
      for (const timer of pending.values()) window.clearTimeout(timer);
      pending.clear();
    };
  }, []);
  return useRef((name: string, delay = 0) => {
    if (timers.current.has(name)) return;
    timers.current.set(
      name,
      window.setTimeout(() => {
        timers.current.delete(name);
        void current.current[name]?.();
      }, delay),
    );
  }).current;
}

/** A value that changes every `ms` (for clocks and rolling charts). */
export function useNow(ms: number): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const timer = window.setInterval(() => setNow(Date.now()), ms);
    return () => window.clearInterval(timer);
  }, [ms]);
  return now;
}
