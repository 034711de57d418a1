// The playground's starter tabs (GraphiQL `defaultTabs`). GraphiQL names each tab after its
// operation, so every tab holds one named operation. They are used only until the user's own
// tabs are stored in this browser.
import type { GraphiQLProps } from 'graphiql';
import { browserTimeZone, localDay } from '../shared/config';

type TabDefinition = NonNullable<GraphiQLProps['defaultTabs']>[number];

const json = (value: unknown) => JSON.stringify(value, null, 2);

export function starterTabs(): TabDefinition[] {
  const today = localDay();
  const timeZone = browserTimeZone();
  return [
    {
      query: `# Welcome to the CareBridge playground.
# Enter your API key in the bar above: it is sent as
# "Authorization: Bearer <key>" and in the websocket's
# connection_init. The tabs hold starter operations;
# ids are global ids: find them here.
query Overview {
  sources { id vendor webhookPath lastDeliveryAt failedDeliveries }
  services { id name sourceId }
}
`,
    },
    {
      query: `# Today's ordered board of one service (take a service id from the Overview tab).
query TodaysQueue($serviceId: ID!, $date: NaiveDate!) {
  queue(serviceId: $serviceId, date: $date) {
    id
    vendorId
    state { kind label }
    joinedAt
    client { name }
    staff { name }
  }
}
`,
      variables: json({ serviceId: 'paste a Service id', date: today }),
    },
    {
      query: `# Every vendor's appointments starting on one clinic-local day.
query AppointmentsOfTheDay($day: NaiveDate!, $timeZone: String!) {
  appointments(filter: { starts: { day: $day, timeZone: $timeZone } }, first: 50) {
    totalCount
    nodes {
      id
      sourceId
      vendorId
      status { kind raw }
      startsAt
      endsAt
      client { name }
      staff { name }
      service { name }
    }
  }
}
`,
      variables: json({ day: today, timeZone }),
    },
    {
      query: `# A patient's timeline: the deliveries that built the record, their appointments,
# queue tickets and telehealth visits (find a client id with clients(search: "…")).
query PatientTimeline($clientId: ID!) {
  node(id: $clientId) {
    ... on Client {
      name
      phone
      sourceId
      sourceEvents { eventType status receivedAt }
    }
  }
  appointments(filter: { clientId: $clientId }, first: 20) {
    nodes { id sourceId status { kind } startsAt service { name } }
  }
  queueEntries(filter: { clientId: $clientId }, first: 20) {
    nodes {
      id
      vendorId
      queueDate
      state { kind }
      stateHistory { state { kind } changedAt }
    }
  }
  visits(filter: { clientId: $clientId }, first: 20) {
    nodes { id status { kind } scheduledStart actualStart actualEnd }
  }
}
`,
      variables: json({ clientId: 'paste a Client id' }),
    },
    {
      query: `# Send a patient alert through Chup for a queue ticket (needs a key with the write
# scope). Re-sending with the same idempotencyKey does not send twice.
mutation SendAlert($queueEntryId: ID!, $message: String!, $idempotencyKey: String!) {
  sendAlert(input: {
    queueEntryId: $queueEntryId
    message: $message
    idempotencyKey: $idempotencyKey
  }) {
    id
    status
    attempts
    lastError
  }
}
`,
      variables: json({
        queueEntryId: 'paste a QueueEntry id',
        message: 'Please proceed to Counter 2',
        idempotencyKey: `alert-${today}-1`,
      }),
    },
    {
      query: `# Everything that changes, live over the websocket. Set "after" to a cursor to replay
# what happened since then first.
subscription LiveEvents($after: String) {
  events(after: $after) {
    cursor
    kind
    sourceId
    entityType
    occurredAt
    payload
    entity {
      id
      ... on QueueEntry { vendorId state { kind label } }
      ... on Appointment { vendorId status { kind } }
      ... on Visit { vendorId status { kind } }
    }
  }
}
`,
      variables: json({ after: null }),
    },
  ];
}
