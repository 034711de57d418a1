// A clinic day for the dashboard's screenshot: the Chup, vCita, TimeTap and VSee fixtures with
// their dates moved to one day (2024-01-17, Kuala Lumpur), a few more walk-in tickets, and two
// deliveries that end in the inbox (one unsupported, one rejected). The assertions of the
// browser tests use the fixtures unchanged; only this screenshot story edits them.
import { fixture, postWebhook } from './harness.mjs';

export const STORY_DAY = '2024-01-17';
export const STORY_ZONE = 'Asia/Kuala_Lumpur';

const epoch = (iso) => Math.floor(Date.parse(iso) / 1000);

/** A Chup walk-in ticket built from `live_queue_created`, moved to `stateName` (if given). */
function ticket(id, name, serviceId, serviceName, joined, stateName, stateValue, updated) {
  const body = fixture('chup/live_queue_created.json');
  const data = body.payload.data;
  Object.assign(data, {
    id,
    registered_client_id: 5000 + id,
    registered_client_name: name,
    client_name: name,
    registered_client_phone: '60111111111',
    service_id: serviceId,
    service_name: serviceName,
    created_at: joined,
    updated_at: joined,
  });
  body.payload.timestamp = joined;
  const steps = [structuredClone(body)];
  if (stateName) {
    const next = structuredClone(body);
    next.payload.event = 'live_queue_updated';
    next.payload.timestamp = updated;
    Object.assign(next.payload.data, {
      state: { name: stateName, value: stateValue },
      state_name: stateName,
      updated_at: updated,
    });
    steps.push(next);
  }
  return steps;
}

export async function postStory(gateway) {
  const deliveries = [];
  const add = (vendor, body) => deliveries.push([vendor, body]);

  // The inbox: an event no mapper handles, and a body that is not vCita's shape.
  add('vcita', fixture('vcita/pivot_event.json'));
  add('vcita', '{"not":"a vcita webhook"}');

  // Walk-in queue (Chup), two services.
  const tickets = [
    ticket(19301, 'Nur Aina', 220, 'Registration', '2024-01-17T08:02:00+08:00', 'SERVED', 5, '2024-01-17T08:20:00+08:00'),
    ticket(19302, 'Lim Wei', 220, 'Registration', '2024-01-17T08:10:00+08:00', 'SERVING', 4, '2024-01-17T08:31:00+08:00'),
    ticket(19303, 'Rajesh K', 220, 'Registration', '2024-01-17T08:15:00+08:00', 'ARRIVED', 3, '2024-01-17T08:25:00+08:00'),
    ticket(19304, 'Siti Hajar', 220, 'Registration', '2024-01-17T08:21:00+08:00'),
    ticket(19305, 'Daniel Ong', 220, 'Registration', '2024-01-17T08:33:00+08:00'),
    ticket(19306, 'Aminah Y', 221, 'Consultation', '2024-01-17T08:05:00+08:00', 'SERVING', 4, '2024-01-17T08:40:00+08:00'),
    ticket(19307, 'Chong Mei', 221, 'Consultation', '2024-01-17T08:12:00+08:00', 'NO_SHOW', 7, '2024-01-17T08:45:00+08:00'),
    ticket(19308, 'Hafiz R', 221, 'Consultation', '2024-01-17T08:26:00+08:00', 'ARRIVED', 3, '2024-01-17T08:41:00+08:00'),
  ];
  for (const steps of tickets) for (const step of steps) add('chup', step);

  // Appointments of the day from three vendors.
  const chupAppointment = fixture('chup/appointment_created.json');
  Object.assign(chupAppointment.payload.data, {
    appointment_date: '2024-01-17',
    start_at: '2024-01-17T10:30:00+08:00',
    end_at: '2024-01-17T10:45:00+08:00',
  });
  add('chup', chupAppointment);
  const vcita = JSON.parse(
    JSON.stringify(fixture('vcita/appointment_scheduled.json')).replaceAll('2023-05-08T10:', '2024-01-17T06:'),
  );
  add('vcita', vcita);
  const timetap = JSON.parse(JSON.stringify(fixture('timetap/create.json')).replaceAll('2024-03-12', '2024-01-17'));
  add('timetap', timetap);

  // Telehealth (VSee v2): the patient and provider, one visit in progress, one ended.
  add('vsee', fixture('vsee/user_created_patient.json'));
  add('vsee', fixture('vsee/user_created_provider.json'));
  const created = fixture('vsee/visit_created_v2.json');
  Object.assign(created.data, { start: epoch('2024-01-17T09:00:00+08:00'), end: epoch('2024-01-17T09:15:00+08:00') });
  created.created = epoch('2024-01-17T08:00:00+08:00');
  add('vsee', created);
  const started = fixture('vsee/visit_updated_v2.json');
  Object.assign(started.data, {
    start: epoch('2024-01-17T09:00:00+08:00'),
    end: epoch('2024-01-17T09:15:00+08:00'),
    actual_start: epoch('2024-01-17T09:02:00+08:00'),
  });
  started.created = epoch('2024-01-17T09:02:00+08:00');
  add('vsee', started);
  const cancelled = fixture('vsee/visit_ended_v2_cancelled.json');
  for (const field of ['start', 'end', 'actual_start', 'actual_end']) {
    if (cancelled.data[field]) cancelled.data[field] = epoch('2024-01-17T07:30:00+08:00');
  }
  cancelled.created = epoch('2024-01-17T07:31:00+08:00');
  add('vsee', cancelled);

  const answers = [];
  for (const [vendor, body] of deliveries) {
    answers.push(await postWebhook(gateway, vendor, body));
  }
  return answers;
}
