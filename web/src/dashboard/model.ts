// Shapes of the query answers and the pure computations the panels draw from them.

export type QueueStateKind =
  | 'WAITING' | 'ARRIVED' | 'SERVING' | 'SERVED' | 'NO_SHOW' | 'MOVED' | 'CANCELLED'
  | 'PHARMACY' | 'BILLING' | 'ENDED' | 'OTHER';

export interface Ticket {
  id: string;
  vendorId: string;
  sourceId?: string;
  joinedAt?: string | null;
  state: { kind: QueueStateKind; label?: string | null };
  service?: { id: string; name?: string | null } | null;
  /** Absent in waiting-room mode (never requested there). */
  client?: { name?: string | null } | null;
  stateHistory?: { state: { kind: QueueStateKind }; changedAt: string }[];
}

export interface Page<T> {
  pageInfo: { hasNextPage: boolean; endCursor?: string | null };
  nodes: T[];
}

export interface Appointment {
  id: string;
  vendorId: string;
  sourceId: string;
  startsAt?: string | null;
  status: { kind: string; raw?: string | null };
  client?: { name?: string | null } | null;
  service?: { name?: string | null } | null;
  staff?: { name?: string | null } | null;
}

export interface Visit {
  id: string;
  vendorId: string;
  sourceId: string;
  status: { kind: string; raw?: string | null };
  patient?: { name?: string | null } | null;
  provider?: { name?: string | null } | null;
  scheduledStart?: string | null;
  actualStart?: string | null;
  actualEnd?: string | null;
}

export interface Source {
  id: string;
  vendor: string;
  lastDeliveryAt?: string | null;
  failedDeliveries: number;
}

export interface InboxItem {
  id: string;
  sourceId: string;
  eventType?: string | null;
  status: string;
  error?: string | null;
  receivedAt: string;
}

/** Board columns: the usual steps always, the rarer ones only when a ticket is in them. */
export const ALWAYS_SHOWN: QueueStateKind[] = ['WAITING', 'ARRIVED', 'SERVING', 'SERVED', 'NO_SHOW'];
export const SOMETIMES_SHOWN: QueueStateKind[] = [
  'PHARMACY', 'BILLING', 'MOVED', 'CANCELLED', 'ENDED', 'OTHER',
];

export const STATE_TITLES: Record<QueueStateKind, string> = {
  WAITING: 'Waiting',
  ARRIVED: 'Arrived',
  SERVING: 'Serving',
  SERVED: 'Served',
  NO_SHOW: 'No show',
  MOVED: 'Moved',
  CANCELLED: 'Cancelled',
  PHARMACY: 'Pharmacy',
  BILLING: 'Billing',
  ENDED: 'Visit ended',
  OTHER: 'Other',
};

/** Still to be seen: the queue length counts these. */
const IN_QUEUE: QueueStateKind[] = ['WAITING', 'ARRIVED'];

export interface ServiceBoard {
  serviceId: string;
  name: string;
  tickets: Ticket[];
}

/** Tickets grouped by service, each group in queue order (joined first, first). */
export function boardsByService(tickets: Ticket[]): ServiceBoard[] {
  const boards = new Map<string, ServiceBoard>();
  for (const ticket of tickets) {
    const serviceId = ticket.service?.id ?? 'none';
    let board = boards.get(serviceId);
    if (!board) {
      board = { serviceId, name: ticket.service?.name ?? 'No service', tickets: [] };
      boards.set(serviceId, board);
    }
    board.tickets.push(ticket);
  }
  const joined = (t: Ticket) => (t.joinedAt ? Date.parse(t.joinedAt) : 0);
  for (const board of boards.values()) board.tickets.sort((a, b) => joined(a) - joined(b));
  return [...boards.values()].sort((a, b) => a.name.localeCompare(b.name));
}

export function columnsFor(tickets: Ticket[]): QueueStateKind[] {
  const present = new Set(tickets.map((t) => t.state.kind));
  return [...ALWAYS_SHOWN, ...SOMETIMES_SHOWN.filter((kind) => present.has(kind))];
}

export interface Point {
  t: number;
  value: number;
}

/**
 * Queue length (tickets waiting or arrived) over time for one service, as a step series:
 * one point per state change of any of its tickets, plus `until` as the last point.
 */
export function queueLengthSeries(tickets: Ticket[], until: number): Point[] {
  const timelines = tickets.map((ticket) => {
    const steps = (ticket.stateHistory ?? [])
      .map((h) => ({ t: Date.parse(h.changedAt), kind: h.state.kind }))
      .filter((s) => Number.isFinite(s.t))
      .sort((a, b) => a.t - b.t);
    if (steps.length === 0) {
      const t = ticket.joinedAt ? Date.parse(ticket.joinedAt) : NaN;
      if (Number.isFinite(t)) steps.push({ t, kind: ticket.state.kind });
    }
    return steps;
  });
  const times = [...new Set(timelines.flat().map((s) => s.t))].sort((a, b) => a - b);
  const points = times.map((t) => ({
    t,
    value: timelines.filter((steps) => {
      let kind: QueueStateKind | null = null;
      for (const step of steps) if (step.t <= t) kind = step.kind;
      return kind !== null && IN_QUEUE.includes(kind);
    }).length,
  }));
  if (points.length > 0 && until > points[points.length - 1].t) {
    points.push({ t: until, value: points[points.length - 1].value });
  }
  return points;
}

/** Events per minute of one source over the last `minutes` minutes (oldest first). */
export function perMinute(times: number[], now: number, minutes: number): number[] {
  const bins = new Array<number>(minutes).fill(0);
  const start = Math.floor(now / 60_000) - minutes + 1;
  for (const t of times) {
    const index = Math.floor(t / 60_000) - start;
    if (index >= 0 && index < minutes) bins[index] += 1;
  }
  return bins;
}

/** A short text for a live event's payload summary (vendor id and state/status). */
export function summarize(payload: unknown): string {
  if (!payload || typeof payload !== 'object') return '';
  const fields = payload as Record<string, unknown>;
  const parts: string[] = [];
  for (const [name, value] of Object.entries(fields)) {
    if (value === null || value === undefined) continue;
    if (typeof value === 'object') continue;
    parts.push(`${name}=${String(value)}`);
    if (parts.length >= 4) break;
  }
  return parts.join(' ');
}
