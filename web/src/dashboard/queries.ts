// Every GraphQL document the dashboard sends. The waiting-room documents select no client
// fields at all: a page on a public screen never receives a name or a phone number.

export const QUEUE_KINDS = ['QUEUE_ENTRY_CREATED', 'QUEUE_ENTRY_CHANGED', 'QUEUE_ENTRY_DELETED'];

export const STAFF_BOARD = /* GraphQL */ `
  query StaffBoard($date: NaiveDate!, $after: String) {
    queueEntries(filter: { queueDate: $date }, first: 100, after: $after) {
      pageInfo { hasNextPage endCursor }
      nodes {
        id
        vendorId
        sourceId
        joinedAt
        state { kind label }
        service { id name }
        client { name }
        stateHistory { state { kind } changedAt }
      }
    }
  }
`;

/** Ticket numbers, states and services only. */
export const WAITING_ROOM_BOARD = /* GraphQL */ `
  query WaitingRoomBoard($date: NaiveDate!, $after: String) {
    queueEntries(filter: { queueDate: $date }, first: 100, after: $after) {
      pageInfo { hasNextPage endCursor }
      nodes {
        id
        vendorId
        joinedAt
        state { kind }
        service { id name }
      }
    }
  }
`;

export const APPOINTMENTS = /* GraphQL */ `
  query DayAppointments($day: NaiveDate!, $timeZone: String!) {
    appointments(filter: { starts: { day: $day, timeZone: $timeZone } }, first: 100) {
      totalCount
      nodes {
        id
        vendorId
        sourceId
        startsAt
        status { kind raw }
        client { name }
        service { name }
        staff { name }
      }
    }
  }
`;

const VISIT_FIELDS = `
  id
  vendorId
  sourceId
  status { kind raw }
  patient { name }
  provider { name }
  scheduledStart
  actualStart
  actualEnd
`;

export const VISITS = /* GraphQL */ `
  query Visits($day: NaiveDate!, $timeZone: String!) {
    inProgress: visits(filter: { statuses: [IN_PROGRESS] }, first: 50) {
      nodes { ${VISIT_FIELDS} }
    }
    ofTheDay: visits(filter: { scheduled: { day: $day, timeZone: $timeZone } }, first: 100) {
      nodes { ${VISIT_FIELDS} }
    }
  }
`;

export const SOURCES = /* GraphQL */ `
  query Sources {
    sources { id vendor lastDeliveryAt failedDeliveries }
  }
`;

/** Admin keys only; any other key gets FORBIDDEN and the panel stays hidden. */
export const INBOX = /* GraphQL */ `
  query Inbox {
    webhookEvents(filter: { statuses: [FAILED, UNSUPPORTED, REJECTED] }, last: 50) {
      totalCount
      edges { node { id sourceId eventType status error receivedAt } }
    }
  }
`;

export const STAFF_EVENTS = /* GraphQL */ `
  subscription DashboardEvents($after: String) {
    events(after: $after) {
      cursor
      kind
      sourceId
      entityType
      occurredAt
      recordedAt
      payload
      entity { id }
    }
  }
`;

export const WAITING_ROOM_EVENTS = /* GraphQL */ `
  subscription WaitingRoomEvents($after: String, $filter: EventFilter) {
    events(filter: $filter, after: $after) {
      cursor
      kind
    }
  }
`;
