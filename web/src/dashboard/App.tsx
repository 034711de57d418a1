// The clinic dashboard: the staff view (queue boards, appointments, telehealth, live feed,
// sources, admin inbox, charts) and the waiting-room display (ticket numbers only).
import { useCallback, useEffect, useMemo, useRef, useState } from 'react';

import { browserTimeZone, loadApiKey, localDay, saveApiKey } from '../shared/config';
import { isForbidden, KeyRefused, query, type StreamEvent } from './api';
import { BarChart, StepChart } from './charts';
import { useEventStream, useNow, useRefresher, type LiveStatus } from './live';
import {
  boardsByService,
  columnsFor,
  perMinute,
  queueLengthSeries,
  STATE_TITLES,
  summarize,
  type Appointment,
  type InboxItem,
  type Page,
  type Source,
  type Ticket,
  type Visit,
} from './model';
import {
  APPOINTMENTS,
  INBOX,
  QUEUE_KINDS,
  SOURCES,
  STAFF_BOARD,
  STAFF_EVENTS,
  VISITS,
  WAITING_ROOM_BOARD,
  WAITING_ROOM_EVENTS,
} from './queries';

interface View {
  waitingRoom: boolean;
  /** The clinic-local day shown (`?date=YYYY-MM-DD`, default today). */
  day: string;
  /** The clinic's zone (`?tz=Area/City`, default the browser's). */
  timeZone: string;
}

function viewFromUrl(): View {
  const params = new URLSearchParams(window.location.search);
  return {
    waitingRoom: params.get('display') === 'waiting-room',
    day: params.get('date') ?? localDay(),
    timeZone: params.get('tz') ?? browserTimeZone(),
  };
}

function hrefFor(view: View, waitingRoom: boolean): string {
  const params = new URLSearchParams(window.location.search);
  if (waitingRoom) params.set('display', 'waiting-room');
  else params.delete('display');
  params.set('date', view.day);
  const text = params.toString();
  return text ? `?${text}` : './';
}

export function App() {
  const view = useMemo(viewFromUrl, []);
  const [key, setKey] = useState(loadApiKey);
  const [keyProblem, setKeyProblem] = useState<string | null>(null);
  const useKey = (next: string) => {
    saveApiKey(next);
    setKeyProblem(null);
    setKey(next);
  };
  const refused = useCallback(() => setKeyProblem('The gateway refused this API key.'), []);
  const showGate = !key || keyProblem !== null;
  return (
    <div className={view.waitingRoom ? 'app waiting-room' : 'app'}>
      {showGate ? (
        <KeyGate problem={keyProblem} onKey={useKey} />
      ) : view.waitingRoom ? (
        <WaitingRoom key={key} apiKey={key} view={view} onRefused={refused} />
      ) : (
        <StaffDashboard key={key} apiKey={key} view={view} onRefused={refused} onKey={useKey} />
      )}
    </div>
  );
}

function KeyGate({ problem, onKey }: { problem: string | null; onKey: (key: string) => void }) {
  const [draft, setDraft] = useState('');
  return (
    <main className="gate">
      <h1>CareBridge</h1>
      <form
        onSubmit={(event) => {
          event.preventDefault();
          if (draft.trim()) onKey(draft.trim());
        }}
      >
        <label>
          API key
          <input
            name="api-key"
            type="password"
            autoComplete="off"
            spellCheck={false}
            value={draft}
            onChange={(event) => setDraft(event.target.value)}
          />
        </label>
        <button type="submit">Open dashboard</button>
      </form>
      {problem ? <p className="problem">{problem}</p> : null}
      <p className="hint">
        The key stays in this browser (localStorage) and is sent only to this gateway's /graphql.
      </p>
    </main>
  );
}

const STATE_TEXT: Record<LiveStatus['state'], string> = {
  connecting: 'Connecting…',
  live: 'Live',
  reconnecting: 'Reconnecting…',
  offline: 'Offline',
};

function ConnectionPill({ status }: { status: LiveStatus }) {
  return (
    <span
      className={`pill ${status.state}`}
      data-testid="connection-state"
      data-state={status.state}
      title={status.detail ?? ''}
    >
      {STATE_TEXT[status.state]}
    </span>
  );
}

/** Every queue-entry page of the day (100 a page). */
async function loadTickets(key: string, document: string, day: string): Promise<Ticket[]> {
  const tickets: Ticket[] = [];
  let after: string | null = null;
  for (let page = 0; page < 20; page += 1) {
    const result: { data?: { queueEntries: Page<Ticket> } | null } = await query<{
      queueEntries: Page<Ticket>;
    }>(key, document, { date: day, after });
    const connection: Page<Ticket> | undefined = result.data?.queueEntries;
    if (!connection) break;
    tickets.push(...connection.nodes);
    if (!connection.pageInfo.hasNextPage || !connection.pageInfo.endCursor) break;
    after = connection.pageInfo.endCursor;
  }
  return tickets;
}

/** While the websocket is not live, panels are refreshed by polling instead. */
const POLL_WHILE_NOT_LIVE_MS = 5_000;

function usePollWhileNotLive(status: LiveStatus, refreshAll: () => void) {
  const refresh = useRef(refreshAll);
  refresh.current = refreshAll;
  // Keyed on live / not live only: the state flips between reconnecting and offline on every
  // retry, which must not restart the timer.
  const isLive = status.state === 'live';
  useEffect(() => {
    if (isLive) return;
    const timer = window.setInterval(() => refresh.current(), POLL_WHILE_NOT_LIVE_MS);
    return () => window.clearInterval(timer);
  }, [isLive]);
}

// ---------------------------------------------------------------- waiting room

function WaitingRoom({ apiKey, view, onRefused }: { apiKey: string; view: View; onRefused: () => void }) {
  const [tickets, setTickets] = useState<Ticket[]>([]);
  const [error, setError] = useState<string | null>(null);
  const load = useCallback(async () => {
    try {
      setTickets(await loadTickets(apiKey, WAITING_ROOM_BOARD, view.day));
      setError(null);
    } catch (e) {
      if (e instanceof KeyRefused) onRefused();
      else setError(String((e as Error).message ?? e));
    }
  }, [apiKey, view.day, onRefused]);
  const schedule = useRefresher({ board: load });
  useEffect(() => void load(), [load]);
  const status = useEventStream(
    apiKey,
    WAITING_ROOM_EVENTS,
    { filter: { kinds: QUEUE_KINDS } },
    () => schedule('board', 100),
    () => schedule('board', 0),
  );
  usePollWhileNotLive(status, () => schedule('board', 0));
  const boards = boardsByService(tickets);
  const groups: [string, Ticket['state']['kind'][]][] = [
    ['Now serving', ['SERVING']],
    ['Arrived: please wait to be called', ['ARRIVED']],
    ['In the queue', ['WAITING']],
  ];
  return (
    <main className="display" data-testid="waiting-room">
      <header>
        <h1>Queue</h1>
        <ConnectionPill status={status} />
        <a className="exit" href={hrefFor(view, false)}>
          staff view
        </a>
      </header>
      {error ? <p className="problem">{error}</p> : null}
      {boards.length === 0 ? <p className="empty">No tickets today.</p> : null}
      <div className="display-services">
        {boards.map((board) => (
          <section key={board.serviceId} className="display-service" data-service={board.name}>
            <h2>{board.name}</h2>
            {groups.map(([title, kinds]) => {
              const shown = board.tickets.filter((t) => kinds.includes(t.state.kind));
              return (
                <div key={title} className="display-group" data-column={kinds[0]}>
                  <h3>{title}</h3>
                  <ol>
                    {shown.map((t) => (
                      <li key={t.id} data-ticket={t.vendorId}>
                        {t.vendorId}
                      </li>
                    ))}
                  </ol>
                </div>
              );
            })}
          </section>
        ))}
      </div>
    </main>
  );
}

// ---------------------------------------------------------------- staff dashboard

interface Visits {
  inProgress: { nodes: Visit[] };
  ofTheDay: { nodes: Visit[] };
}

const FEED_LENGTH = 100;
const RATE_MINUTES = 30;

function StaffDashboard({
  apiKey,
  view,
  onRefused,
  onKey,
}: {
  apiKey: string;
  view: View;
  onRefused: () => void;
  onKey: (key: string) => void;
}) {
  const [tickets, setTickets] = useState<Ticket[]>([]);
  const [appointments, setAppointments] = useState<Appointment[]>([]);
  const [visits, setVisits] = useState<Visits | null>(null);
  const [sources, setSources] = useState<Source[]>([]);
  const [inbox, setInbox] = useState<{ total: number; items: InboxItem[] } | null>(null);
  const [feed, setFeed] = useState<StreamEvent[]>([]);
  const [errors, setErrors] = useState<Record<string, string>>({});
  const eventTimes = useRef(new Map<string, number[]>());
  const now = useNow(15_000);

  const guard = useCallback(
    (panel: string, work: () => Promise<void>) => async () => {
      try {
        await work();
        setErrors((all) => {
          if (!(panel in all)) return all;
          const rest = { ...all };
          delete rest[panel];
          return rest;
        });
      } catch (e) {
        if (e instanceof KeyRefused) onRefused();
        else setErrors((all) => ({ ...all, [panel]: String((e as Error).message ?? e) }));
      }
    },
    [onRefused],
  );
  const vars = { day: view.day, timeZone: view.timeZone };
  const loaders = {
    board: guard('board', async () => setTickets(await loadTickets(apiKey, STAFF_BOARD, view.day))),
    appointments: guard('appointments', async () => {
      const r = await query<{ appointments: { nodes: Appointment[] } }>(apiKey, APPOINTMENTS, vars);
      setAppointments(r.data?.appointments.nodes ?? []);
    }),
    visits: guard('visits', async () => {
      const r = await query<Visits>(apiKey, VISITS, vars);
      setVisits(r.data ?? null);
    }),
    sources: guard('sources', async () => {
      const r = await query<{ sources: Source[] }>(apiKey, SOURCES);
      setSources(r.data?.sources ?? []);
    }),
    inbox: guard('inbox', async () => {
      const r = await query<{ webhookEvents: { totalCount: number; edges: { node: InboxItem }[] } }>(
        apiKey,
        INBOX,
      );
      if (isForbidden(r.errors) || !r.data?.webhookEvents) {
        setInbox(null); // not an admin key: no inbox panel
        return;
      }
      const items = r.data.webhookEvents.edges.map((e) => e.node).reverse();
      setInbox({ total: r.data.webhookEvents.totalCount, items });
    }),
  };
  const schedule = useRefresher(loaders);
  const refreshAll = () => {
    for (const name of Object.keys(loaders)) schedule(name, 0);
  };
  useEffect(() => {
    refreshAll();
    // Deliveries that fail make no domain event: the sources and the inbox are also polled.
    const timer = window.setInterval(() => {
      schedule('sources', 0);
      schedule('inbox', 0);
    }, 15_000);
    return () => window.clearInterval(timer);
  }, []);

  const onEvent = (event: StreamEvent) => {
    setFeed((all) => [event, ...all].slice(0, FEED_LENGTH));
    const source = event.sourceId ?? 'internal';
    const at = Date.parse(event.recordedAt ?? '') || Date.now();
    const times = eventTimes.current.get(source) ?? [];
    times.push(at);
    const horizon = Date.now() - RATE_MINUTES * 60_000;
    eventTimes.current.set(source, times.filter((t) => t >= horizon));
    const kind = event.kind;
    if (kind.startsWith('QUEUE_ENTRY_')) schedule('board', 100);
    else if (kind.startsWith('APPOINTMENT_')) schedule('appointments', 200);
    else if (kind.startsWith('VISIT_')) schedule('visits', 200);
    else if (/^(CLIENT|SERVICE|STAFF|LOCATION)_/.test(kind)) {
      schedule('board', 500);
      schedule('appointments', 500);
      schedule('visits', 500);
    }
    schedule('sources', 300);
    schedule('inbox', 1_000);
  };
  const status = useEventStream(apiKey, STAFF_EVENTS, undefined, onEvent, refreshAll);
  usePollWhileNotLive(status, refreshAll);

  const [clock, clockSeconds] = useMemo(() => {
    const options = { timeZone: view.timeZone, hour: '2-digit', minute: '2-digit' } as const;
    return [
      new Intl.DateTimeFormat(undefined, options),
      new Intl.DateTimeFormat(undefined, { ...options, second: '2-digit' }),
    ];
  }, [view.timeZone]);
  const time = (iso?: string | null) => (iso ? clock.format(new Date(iso)) : '—');
  const timeSeconds = (iso?: string | null) => (iso ? clockSeconds.format(new Date(iso)) : '—');
  const vendorOf = (sourceId: string) => sources.find((s) => s.id === sourceId)?.vendor ?? '';
  const boards = boardsByService(tickets);
  const isToday = view.day === localDay();
  const dayEnd = isToday ? now : Math.max(...tickets.flatMap((t) => (t.stateHistory ?? []).map((h) => Date.parse(h.changedAt))), 0);
  const rateSources = [...new Set([...sources.map((s) => s.id), ...eventTimes.current.keys()])];
  const ended = (visits?.ofTheDay.nodes ?? []).filter(
    (v) => v.actualEnd || ['COMPLETED', 'CANCELLED'].includes(v.status.kind),
  );

  return (
    <>
      <header className="topbar">
        <h1>CareBridge</h1>
        <span className="day">
          {view.day} · {view.timeZone}
        </span>
        <ConnectionPill status={status} />
        <nav>
          <a href={hrefFor(view, true)} data-testid="waiting-room-link">
            Waiting-room display
          </a>
          <a href="playground/">Playground</a>
          <button type="button" onClick={() => onKey('')}>
            Change key
          </button>
        </nav>
      </header>
      {status.detail && status.state !== 'live' ? <p className="status-detail">{status.detail}</p> : null}
      <main className="grid">
        <section className="panel wide" aria-labelledby="board-title">
          <h2 id="board-title">Live queue</h2>
          <PanelError message={errors.board} />
          {boards.length === 0 ? <p className="empty">No tickets on {view.day}.</p> : null}
          {boards.map((board) => (
            <div className="board" key={board.serviceId} data-service={board.name}>
              <h3>
                {board.name} <small>{board.tickets.length} tickets</small>
              </h3>
              <div className="columns">
                {columnsFor(board.tickets).map((kind) => {
                  const inColumn = board.tickets.filter((t) => t.state.kind === kind);
                  return (
                    <div className="column" key={kind} data-column={kind}>
                      <h4>
                        {STATE_TITLES[kind]} <small>{inColumn.length}</small>
                      </h4>
                      {inColumn.map((t) => (
                        <div className="ticket" key={t.id} data-ticket={t.vendorId} title={t.state.label ?? ''}>
                          <span className="number">#{t.vendorId}</span>
                          <span className="who">{t.client?.name ?? ''}</span>
                          <span className="when">{time(t.joinedAt)}</span>
                        </div>
                      ))}
                    </div>
                  );
                })}
              </div>
            </div>
          ))}
        </section>

        <section className="panel" aria-labelledby="appointments-title">
          <h2 id="appointments-title">Appointments {view.day}</h2>
          <PanelError message={errors.appointments} />
          <table>
            <thead>
              <tr>
                <th>Starts</th>
                <th>Patient</th>
                <th>Service</th>
                <th>Status</th>
                <th>Source</th>
              </tr>
            </thead>
            <tbody>
              {[...appointments]
                .sort((a, b) => (a.startsAt ?? '').localeCompare(b.startsAt ?? ''))
                .map((a) => (
                  <tr key={a.id}>
                    <td>{time(a.startsAt)}</td>
                    <td>{a.client?.name ?? '—'}</td>
                    <td>{a.service?.name ?? '—'}</td>
                    <td>
                      <span className={`status ${a.status.kind}`} title={a.status.raw ?? ''}>
                        {a.status.kind}
                      </span>
                    </td>
                    <td>
                      {a.sourceId} <small>{vendorOf(a.sourceId)}</small>
                    </td>
                  </tr>
                ))}
            </tbody>
          </table>
          {appointments.length === 0 ? <p className="empty">No appointments.</p> : null}
        </section>

        <section className="panel" aria-labelledby="visits-title">
          <h2 id="visits-title">Telehealth</h2>
          <PanelError message={errors.visits} />
          <h3>In progress</h3>
          <VisitList visits={visits?.inProgress.nodes ?? []} time={time} />
          <h3>Ended {view.day}</h3>
          <VisitList visits={ended} time={time} />
        </section>

        <section className="panel" aria-labelledby="sources-title">
          <h2 id="sources-title">Sources</h2>
          <PanelError message={errors.sources} />
          <table>
            <thead>
              <tr>
                <th>Source</th>
                <th>Vendor</th>
                <th>Last event</th>
                <th>Failed</th>
              </tr>
            </thead>
            <tbody>
              {sources.map((s) => (
                <tr key={s.id} data-source={s.id}>
                  <td>{s.id}</td>
                  <td>{s.vendor}</td>
                  <td>{s.lastDeliveryAt ? new Date(s.lastDeliveryAt).toLocaleString(undefined, { timeZone: view.timeZone }) : 'never'}</td>
                  <td className={s.failedDeliveries > 0 ? 'bad' : ''}>{s.failedDeliveries}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </section>

        <section className="panel" aria-labelledby="charts-title">
          <h2 id="charts-title">Queue length over the day</h2>
          {boards.map((board) => (
            <StepChart
              key={board.serviceId}
              label={board.name}
              timeZone={view.timeZone}
              points={queueLengthSeries(board.tickets, dayEnd)}
            />
          ))}
          {boards.length === 0 ? <p className="empty">No tickets yet.</p> : null}
        </section>

        <section className="panel" aria-labelledby="rate-title">
          <h2 id="rate-title">Events per minute</h2>
          <p className="hint">Live events since this page opened, last {RATE_MINUTES} minutes.</p>
          {rateSources.map((id) => (
            <BarChart key={id} label={id} bins={perMinute(eventTimes.current.get(id) ?? [], now, RATE_MINUTES)} />
          ))}
        </section>

        <section className="panel wide" aria-labelledby="feed-title">
          <h2 id="feed-title">Live events</h2>
          {feed.length === 0 ? <p className="empty">Waiting for the first event…</p> : null}
          <ol className="feed" data-testid="event-feed">
            {feed.map((e) => (
              <li key={e.cursor} data-kind={e.kind}>
                <time>{timeSeconds(e.recordedAt ?? e.occurredAt)}</time>
                <span className="kind">{e.kind}</span>
                <span className="source">{e.sourceId ?? ''}</span>
                <span className="summary">{summarize(e.payload)}</span>
              </li>
            ))}
          </ol>
        </section>

        {inbox ? (
          <section className="panel wide" aria-labelledby="inbox-title" data-testid="inbox">
            <h2 id="inbox-title">
              Inbox: failed, unsupported and rejected deliveries <small>{inbox.total}</small>
            </h2>
            <PanelError message={errors.inbox} />
            <table>
              <thead>
                <tr>
                  <th>Received</th>
                  <th>Source</th>
                  <th>Event</th>
                  <th>Status</th>
                  <th>Reason</th>
                </tr>
              </thead>
              <tbody>
                {inbox.items.map((item) => (
                  <tr key={item.id}>
                    <td>{new Date(item.receivedAt).toLocaleString(undefined, { timeZone: view.timeZone })}</td>
                    <td>{item.sourceId}</td>
                    <td>{item.eventType ?? '—'}</td>
                    <td>
                      <span className={`status ${item.status}`}>{item.status}</span>
                    </td>
                    <td className="reason">{item.error ?? ''}</td>
                  </tr>
                ))}
              </tbody>
            </table>
            {inbox.items.length === 0 ? <p className="empty">Nothing failed.</p> : null}
          </section>
        ) : null}
      </main>
    </>
  );
}

function VisitList({ visits, time }: { visits: Visit[]; time: (iso?: string | null) => string }) {
  if (visits.length === 0) return <p className="empty">None.</p>;
  return (
    <ul className="visits">
      {visits.map((v) => (
        <li key={v.id}>
          <span className="who">{v.patient?.name ?? `visit ${v.vendorId}`}</span>
          <span>{v.provider?.name ?? ''}</span>
          <span>
            {time(v.actualStart ?? v.scheduledStart)} – {v.actualEnd ? time(v.actualEnd) : 'now'}
          </span>
          <span className={`status ${v.status.kind}`}>{v.status.kind}</span>
        </li>
      ))}
    </ul>
  );
}

function PanelError({ message }: { message?: string }) {
  return message ? <p className="problem">{message}</p> : null;
}
