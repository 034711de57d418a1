//! The query API through real HTTP after ingesting fixtures: every root field, pagination,
//! filters, node ids, error codes, limits, GET/POST rules and the statement count of a page.

use serde_json::{Value, json};

use crate::helpers::{ADMIN_KEY, READ_KEY, TestApp, gql, ingest, spawn_app};

async fn clinic_day(app: &TestApp) {
    for name in [
        "live_queue_created",
        "live_queue_updated_arrived",
        "live_queue_created_from_appointment",
        "live_queue_updated_cancel",
    ] {
        ingest(app, "chup", name).await;
    }
    for name in [
        "appointment_created",
        "appointment_updated",
        "client_created",
    ] {
        ingest(app, "chup", name).await;
    }
    for name in ["create", "reschedule"] {
        ingest(app, "timetap", name).await;
    }
    for name in ["visit_created_v2", "visit_invoice_processed_v2"] {
        ingest(app, "vsee", name).await;
    }
    for name in ["client_created", "appointment_scheduled", "payment_paid"] {
        ingest(app, "vcita", name).await;
    }
}

fn data(body: &Value) -> &Value {
    assert!(body.get("errors").is_none(), "unexpected errors: {body}");
    &body["data"]
}

fn error_code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code: {body}"))
}

#[tokio::test]
async fn queue_entries_list_tickets_with_client_service_staff_and_history() {
    let app = spawn_app().await;
    clinic_day(&app).await;
    let body = gql(
        &app,
        READ_KEY,
        r#"{ queueEntries(filter: {sourceIds: ["chup-main"]}) {
              totalCount
              edges { cursor node { id vendorId state { kind rawCode rawName label }
                client { name phone } service { name } staff { name }
                stateHistory { state { kind } changedAt sourceEvent { eventType } }
                sourceEvents { status eventType } } } } }"#,
        json!({}),
    )
    .await;
    let connection = &data(&body)["queueEntries"];
    assert_eq!(connection["totalCount"], 3, "{connection}");
    let first = &connection["edges"][0]["node"];
    assert_eq!(first["vendorId"], "19242");
    assert_eq!(
        first["state"],
        json!({"kind": "ARRIVED", "rawCode": 3, "rawName": "ARRIVED", "label": "Arrived"})
    );
    assert_eq!(
        first["client"],
        json!({"name": "Saad", "phone": "+923093927454"})
    );
    assert_eq!(first["service"]["name"], "Registration");
    let history: Vec<&str> = first["stateHistory"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| h["state"]["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(history, ["WAITING", "ARRIVED"]);
    assert_eq!(first["sourceEvents"].as_array().expect("lineage").len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn pagination_walks_forward_and_backward_without_gaps_or_overlap() {
    let app = spawn_app().await;
    clinic_day(&app).await;
    let query = r#"query($first: Int, $after: String, $last: Int, $before: String) {
        clients(first: $first, after: $after, last: $last, before: $before) {
          totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
          edges { cursor node { id } } } }"#;
    let all = gql(&app, READ_KEY, query, json!({"first": 100})).await;
    let all_ids: Vec<Value> = data(&all)["clients"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| e["node"]["id"].clone())
        .collect();
    let total = data(&all)["clients"]["totalCount"].as_u64().expect("count") as usize;
    assert_eq!(all_ids.len(), total);
    assert!(total >= 4, "several clients were ingested: {total}");

    let mut walked = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = gql(&app, READ_KEY, query, json!({"first": 2, "after": after})).await;
        let connection = &data(&page)["clients"];
        walked.extend(
            connection["edges"]
                .as_array()
                .expect("edges")
                .iter()
                .map(|e| e["node"]["id"].clone()),
        );
        if !connection["pageInfo"]["hasNextPage"]
            .as_bool()
            .expect("bool")
        {
            break;
        }
        after = connection["pageInfo"]["endCursor"]
            .as_str()
            .map(str::to_owned);
    }
    assert_eq!(
        walked, all_ids,
        "forward pages of 2 give every client once, in order"
    );

    let tail = gql(&app, READ_KEY, query, json!({"last": 2})).await;
    let tail = &data(&tail)["clients"];
    assert_eq!(tail["pageInfo"]["hasPreviousPage"], true);
    let tail_ids: Vec<Value> = tail["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| e["node"]["id"].clone())
        .collect();
    assert_eq!(tail_ids, all_ids[all_ids.len() - 2..].to_vec());
    let before = tail["pageInfo"]["startCursor"].as_str().expect("cursor");
    let previous = gql(&app, READ_KEY, query, json!({"last": 1, "before": before})).await;
    assert_eq!(
        data(&previous)["clients"]["edges"][0]["node"]["id"],
        all_ids[all_ids.len() - 3]
    );

    let empty = gql(&app, READ_KEY, query, json!({"first": 0})).await;
    assert_eq!(data(&empty)["clients"]["edges"], json!([]));
    app.stop().await;
}

#[tokio::test]
async fn bad_page_arguments_are_bad_user_input() {
    let app = spawn_app().await;
    for variables in [
        json!({"first": -1}),
        json!({"first": 101}),
        json!({"first": 1, "last": 1}),
        json!({"after": "x"}),
    ] {
        let body = gql(
            &app,
            READ_KEY,
            "query($first: Int, $last: Int, $after: String) { clients(first: $first, last: $last, after: $after) { edges { cursor } } }",
            variables.clone(),
        )
        .await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{variables}");
    }
    app.stop().await;
}

#[tokio::test]
async fn appointment_filters_cover_source_status_day_and_references() {
    let app = spawn_app().await;
    clinic_day(&app).await;
    let query = r#"query($f: AppointmentFilter) { appointments(filter: $f) { totalCount
        edges { node { vendorId sourceId startsAt timeZone status { kind raw rawSubStatus }
          client { name } staff { name } service { name id } } } } }"#;
    let count = |body: &Value| {
        data(body)["appointments"]["totalCount"]
            .as_u64()
            .expect("count")
    };

    let everything = gql(&app, READ_KEY, query, json!({})).await;
    assert_eq!(count(&everything), 3, "{everything}");
    let timetap = gql(
        &app,
        READ_KEY,
        query,
        json!({"f": {"sourceIds": ["timetap-main"]}}),
    )
    .await;
    assert_eq!(count(&timetap), 1);
    let node = &data(&timetap)["appointments"]["edges"][0]["node"];
    assert_eq!(node["startsAt"], "2024-03-14T17:30:00+00:00");
    assert_eq!(node["timeZone"], "America/New_York");

    // 2024-03-14 in New York holds the TimeTap appointment; the day before does not.
    let day = |d: &str| json!({"f": {"starts": {"day": d, "timeZone": "America/New_York"}}});
    assert_eq!(
        count(&gql(&app, READ_KEY, query, day("2024-03-14")).await),
        1
    );
    assert_eq!(
        count(&gql(&app, READ_KEY, query, day("2024-03-13")).await),
        0
    );
    let utc =
        json!({"f": {"starts": {"from": "2024-03-14T17:00:00Z", "to": "2024-03-14T18:00:00Z"}}});
    assert_eq!(count(&gql(&app, READ_KEY, query, utc).await), 1);

    let rescheduled = gql(
        &app,
        READ_KEY,
        query,
        json!({"f": {"statuses": ["RESCHEDULED"]}}),
    )
    .await;
    assert_eq!(
        data(&rescheduled)["appointments"]["edges"][0]["node"]["sourceId"],
        "chup-main"
    );

    let service_id = node["service"]["id"]
        .as_str()
        .expect("service id")
        .to_owned();
    let by_service = gql(
        &app,
        READ_KEY,
        query,
        json!({"f": {"serviceId": service_id}}),
    )
    .await;
    assert_eq!(count(&by_service), 1);
    let wrong_kind = gql(
        &app,
        READ_KEY,
        query,
        json!({"f": {"serviceId": "Client:1"}}),
    )
    .await;
    assert_eq!(error_code(&wrong_kind), "BAD_USER_INPUT");
    let no_zone = gql(
        &app,
        READ_KEY,
        query,
        json!({"f": {"starts": {"day": "2024-03-14"}}}),
    )
    .await;
    assert_eq!(error_code(&no_zone), "BAD_USER_INPUT");
    app.stop().await;
}

#[tokio::test]
async fn the_queue_board_lists_one_service_for_one_day_in_join_order() {
    let app = spawn_app().await;
    clinic_day(&app).await;
    let services = gql(&app, READ_KEY, "{ services { id name } }", json!({})).await;
    let registration = data(&services)["services"]
        .as_array()
        .expect("services")
        .iter()
        .find(|s| s["name"] == "Registration")
        .expect("Registration service")["id"]
        .clone();
    let board = gql(
        &app,
        READ_KEY,
        "query($s: ID!, $d: NaiveDate!) { queue(serviceId: $s, date: $d) { vendorId state { kind } } }",
        json!({"s": registration, "d": "2024-01-17"}),
    )
    .await;
    let tickets: Vec<&str> = data(&board)["queue"]
        .as_array()
        .expect("board")
        .iter()
        .map(|t| t["vendorId"].as_str().expect("id"))
        .collect();
    assert_eq!(tickets, ["19242", "19244"]);
    let other_day = gql(
        &app,
        READ_KEY,
        "query($s: ID!) { queue(serviceId: $s, date: \"2024-01-18\") { vendorId } }",
        json!({"s": registration}),
    )
    .await;
    assert_eq!(data(&other_day)["queue"], json!([]));
    app.stop().await;
}

/// The Registration service's global id.
async fn registration_service(app: &TestApp) -> Value {
    let services = gql(app, READ_KEY, "{ services { id name } }", json!({})).await;
    data(&services)["services"]
        .as_array()
        .expect("services")
        .iter()
        .find(|s| s["name"] == "Registration")
        .expect("Registration service")["id"]
        .clone()
}

#[tokio::test]
async fn a_queue_board_with_client_staff_and_service_costs_one_statement() {
    let app = spawn_app().await;
    clinic_day(&app).await;
    let registration = registration_service(&app).await;
    let query = "query($s: ID!, $d: NaiveDate!) { queue(serviceId: $s, date: $d) { vendorId \
                 client { id name phone } staff { name } service { id name } } }";
    let variables = json!({"s": registration, "d": "2024-01-17"});
    // The pool also serves the event tailer's periodic look; the cheapest of three runs is the
    // query's own cost.
    let mut cost = u64::MAX;
    let mut board = Value::Null;
    for _ in 0..3 {
        let before = app.statements.get();
        board = gql(&app, READ_KEY, query, variables.clone()).await;
        cost = cost.min(app.statements.get() - before);
    }
    assert_eq!(cost, 1, "the board and its references in one statement");
    let tickets = data(&board)["queue"].as_array().expect("board");
    assert_eq!(tickets.len(), 2);
    for ticket in tickets {
        assert_eq!(ticket["service"]["id"], registration, "{ticket}");
        assert_eq!(ticket["service"]["name"], "Registration", "{ticket}");
        assert!(ticket["client"]["name"].is_string(), "{ticket}");
        assert!(ticket["client"]["phone"].is_string(), "{ticket}");
        assert!(ticket["staff"]["name"].is_string(), "{ticket}");
    }
    // The same answer as resolving each reference on its own (through `node`).
    let client_id = tickets[0]["client"]["id"].clone();
    let node = gql(
        &app,
        READ_KEY,
        "query($id: ID!) { node(id: $id) { ... on Client { id name phone } } }",
        json!({"id": client_id}),
    )
    .await;
    assert_eq!(data(&node)["node"], tickets[0]["client"]);
    app.stop().await;
}

/// The board's decoder walks the joined row by position (`store::board`); it must give exactly
/// the models that reading each table on its own gives, so a reordered or retyped column in an
/// entity cannot slip through as a swapped value.
#[tokio::test]
async fn a_joined_board_decodes_to_the_same_models_as_reading_each_table() {
    use entity::{client, queue_entry, service, staff};
    use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};

    let app = spawn_app().await;
    clinic_day(&app).await;
    let every_ticket = || queue_entry::Entity::find().order_by_asc(queue_entry::Column::Id);
    // Every text column of one ticket and of what it points at holds its own value, so a
    // decoder that swapped two columns of the same type would be seen.
    let ticket = every_ticket()
        .filter(queue_entry::Column::ClientId.is_not_null())
        .filter(queue_entry::Column::StaffId.is_not_null())
        .filter(queue_entry::Column::ServiceId.is_not_null())
        .one(&app.db)
        .await
        .expect("ticket")
        .expect("a ticket with client, staff and service");
    let distinct = |column: &str| Some(format!("{column} value"));
    let mut entry: queue_entry::ActiveModel = ticket.clone().into();
    entry.appointment_vendor_id = Set(distinct("appointment_vendor_id"));
    entry.state_name = Set(distinct("state_name"));
    entry.state_label = Set(distinct("state_label"));
    entry.time_zone = Set(distinct("time_zone"));
    entry.update(&app.db).await.expect("ticket update");
    let mut person: client::ActiveModel =
        client::Entity::find_by_id(ticket.client_id.expect("client"))
            .one(&app.db)
            .await
            .expect("client")
            .expect("referenced row")
            .into();
    person.first_name = Set(distinct("first_name"));
    person.last_name = Set(distinct("last_name"));
    person.full_name = Set(distinct("full_name"));
    person.phone = Set(distinct("phone"));
    person.email = Set(distinct("email"));
    person.update(&app.db).await.expect("client update");
    let mut member: staff::ActiveModel = staff::Entity::find_by_id(ticket.staff_id.expect("staff"))
        .one(&app.db)
        .await
        .expect("staff")
        .expect("referenced row")
        .into();
    member.name = Set(distinct("staff name"));
    member.email = Set(distinct("staff email"));
    member.time_zone = Set(distinct("staff time_zone"));
    member.update(&app.db).await.expect("staff update");
    let board = carebridge::store::board::tickets_with_refs(&app.db, every_ticket())
        .await
        .expect("board");
    let tickets = every_ticket().all(&app.db).await.expect("tickets");
    assert!(tickets.len() >= 3, "the fixtures make tickets");
    assert_eq!(board.entries, tickets);

    let clients: Vec<_> = tickets.iter().filter_map(|t| t.client_id).collect();
    let members: Vec<_> = tickets.iter().filter_map(|t| t.staff_id).collect();
    let services: Vec<_> = tickets.iter().filter_map(|t| t.service_id).collect();
    assert!(
        !clients.is_empty() && !members.is_empty() && !services.is_empty(),
        "the fixtures' tickets have every kind of reference"
    );
    let expected_clients = client::Entity::find()
        .filter(client::Column::Id.is_in(clients))
        .order_by_asc(client::Column::Id)
        .all(&app.db)
        .await
        .expect("clients");
    let expected_staff = staff::Entity::find()
        .filter(staff::Column::Id.is_in(members))
        .order_by_asc(staff::Column::Id)
        .all(&app.db)
        .await
        .expect("staff");
    let expected_services = service::Entity::find()
        .filter(service::Column::Id.is_in(services))
        .order_by_asc(service::Column::Id)
        .all(&app.db)
        .await
        .expect("services");
    let (mut found_clients, mut found_staff, mut found_services) =
        (board.clients, board.staff, board.services);
    found_clients.sort_by_key(|m| m.id);
    found_staff.sort_by_key(|m| m.id);
    found_services.sort_by_key(|m| m.id);
    assert_eq!(found_clients, expected_clients);
    assert_eq!(found_staff, expected_staff);
    assert_eq!(found_services, expected_services);
    app.stop().await;
}

#[tokio::test]
async fn a_queue_board_without_references_reads_only_the_tickets() {
    let app = spawn_app().await;
    clinic_day(&app).await;
    let registration = registration_service(&app).await;
    let board = gql(
        &app,
        READ_KEY,
        "query($s: ID!, $d: NaiveDate!) { queue(serviceId: $s, date: $d) { vendorId queueDate } }",
        json!({"s": registration, "d": "2024-01-17"}),
    )
    .await;
    assert_eq!(
        data(&board)["queue"],
        json!([{"vendorId": "19242", "queueDate": "2024-01-17"},
               {"vendorId": "19244", "queueDate": "2024-01-17"}])
    );
    app.stop().await;
}

#[tokio::test]
async fn answers_list_fields_in_the_order_the_query_asked_for_them() {
    let app = spawn_app().await;
    clinic_day(&app).await;
    let query = "{ services { name id } sources { vendor id } }";
    let text = app
        .client
        .post(app.url("/graphql"))
        .bearer_auth(READ_KEY)
        .json(&json!({ "query": query }))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("body");
    assert!(
        text.starts_with(r#"{"data":{"services":[{"name":"#),
        "fields out of the query's order: {text}"
    );
    assert!(
        text.contains(r#""sources":[{"vendor":"#),
        "fields out of the query's order: {text}"
    );
    app.stop().await;
}

#[tokio::test]
async fn visits_payments_staff_sources_and_lists_answer() {
    let app = spawn_app().await;
    clinic_day(&app).await;
    let body = gql(
        &app,
        READ_KEY,
        r#"{ visits(filter: {statuses: [COMPLETED]}) { totalCount edges { node { vendorId status { kind raw }
               patient { vendorId } invoice { status amountDue amountPaid currency } } } }
             payments { edges { node { amount currency state client { name } } } }
             staff { name } locations { name kind }
             sources { id vendor lastDeliveryAt failedDeliveries }
             alerts { id } vcitaSubscriptions { id }
             events(first: 500) { cursor kind entity { id } } }"#,
        json!({}),
    )
    .await;
    let data = data(&body);
    let visit = &data["visits"]["edges"][0]["node"];
    assert_eq!(data["visits"]["totalCount"], 1);
    assert_eq!(visit["invoice"]["amountDue"], 2500);
    assert_eq!(visit["status"]["raw"], "completed");
    assert_eq!(data["payments"]["edges"][0]["node"]["state"], "paid");
    assert!(!data["staff"].as_array().expect("staff").is_empty());
    assert_eq!(data["locations"][0]["name"], "MyOffice");
    let chup = data["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .find(|s| s["id"] == "chup-main")
        .expect("chup");
    assert!(chup["lastDeliveryAt"].is_string());
    assert_eq!(chup["failedDeliveries"], 0);
    assert_eq!(data["alerts"], json!([]));
    assert_eq!(data["vcitaSubscriptions"], json!([]));
    let events = data["events"].as_array().expect("events");
    assert!(events.len() > 10);
    let cursors: Vec<i64> = events
        .iter()
        .map(|e| e["cursor"].as_str().expect("cursor").parse().expect("int"))
        .collect();
    assert!(
        cursors.windows(2).all(|w| w[0] < w[1]),
        "events come in cursor order"
    );
    assert!(
        events.iter().all(|e| e["entity"]["id"].is_string()),
        "every event resolves its entity"
    );
    app.stop().await;
}

#[tokio::test]
async fn client_search_matches_name_phone_and_email_case_insensitively() {
    let app = spawn_app().await;
    clinic_day(&app).await;
    let search = |text: &'static str| {
        let app = &app;
        async move {
            let body = gql(
                app,
                READ_KEY,
                "query($s: String) { clients(search: $s) { edges { node { name } } } }",
                json!({"s": text}),
            )
            .await;
            data(&body)["clients"]["edges"]
                .as_array()
                .expect("edges")
                .iter()
                .map(|e| e["node"]["name"].as_str().unwrap_or("").to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(search("saad").await, ["Saad"]);
    assert_eq!(search("3093927").await, ["Saad"], "phone digits");
    assert!(
        search("TAN MEI")
            .await
            .iter()
            .any(|n| n.contains("Tan Mei Ling"))
    );
    assert!(search("zzz-nobody").await.is_empty());
    assert!(
        search("100%").await.is_empty(),
        "LIKE wildcards are escaped"
    );
    app.stop().await;
}

#[tokio::test]
async fn node_round_trips_every_listed_id() {
    let app = spawn_app().await;
    clinic_day(&app).await;
    let body = gql(
        &app,
        READ_KEY,
        "{ queueEntries { edges { node { id } } } appointments { edges { node { id } } } visits { edges { node { id } } }
           clients { edges { node { id } } } payments { edges { node { id } } } webhookEvents { edges { node { id } } }
           services { id } staff { id } locations { id } }",
        json!({}),
    )
    .await;
    let mut ids = Vec::new();
    collect_ids(data(&body), &mut ids);
    assert!(ids.len() > 20);
    for id in ids {
        let found = gql(
            &app,
            READ_KEY,
            "query($id: ID!) { node(id: $id) { id __typename } }",
            json!({"id": id}),
        )
        .await;
        assert_eq!(data(&found)["node"]["id"], id, "{found}");
        let typename = data(&found)["node"]["__typename"]
            .as_str()
            .expect("typename");
        assert!(id.starts_with(&format!("{typename}:")));
    }
    let missing = gql(
        &app,
        READ_KEY,
        "{ node(id: \"Client:999999\") { id } }",
        json!({}),
    )
    .await;
    assert_eq!(data(&missing)["node"], Value::Null);
    let malformed = gql(
        &app,
        READ_KEY,
        "{ node(id: \"nonsense\") { id } }",
        json!({}),
    )
    .await;
    assert_eq!(error_code(&malformed), "BAD_USER_INPUT");
    app.stop().await;
}

fn collect_ids(value: &Value, ids: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("id", Value::String(id)) => ids.push(id.clone()),
                    _ => collect_ids(value, ids),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_ids(item, ids)),
        _ => {}
    }
}

#[tokio::test]
async fn the_inbox_shows_outcomes_and_raw_bodies_only_to_admin() {
    let app = spawn_app().await;
    clinic_day(&app).await;
    ingest(&app, "chup", "live_queue_created").await; // a duplicate
    let query = r#"{ webhookEvents(filter: {statuses: [DUPLICATE]}) { totalCount
        edges { node { status eventType verification rawBody entities { entityType change } } } } }"#;
    let admin = gql(&app, ADMIN_KEY, query, json!({})).await;
    let node = &data(&admin)["webhookEvents"]["edges"][0]["node"];
    assert_eq!(data(&admin)["webhookEvents"]["totalCount"], 1);
    assert_eq!(node["status"], "DUPLICATE");
    assert!(
        node["rawBody"]
            .as_str()
            .expect("raw body")
            .contains("live_queue_created")
    );

    let reader = gql(&app, READ_KEY, query, json!({})).await;
    assert_eq!(error_code(&reader), "FORBIDDEN");
    assert_eq!(
        reader["errors"][0]["path"],
        json!(["webhookEvents", "edges", 0, "node", "rawBody"])
    );
    assert_eq!(
        reader["data"]["webhookEvents"]["totalCount"], 1,
        "the rest of the answer still resolves"
    );

    let lineage = gql(&app, ADMIN_KEY, "{ webhookEvents(first: 1) { edges { node { entities { entityType entityId change } } } } }", json!({})).await;
    let entities = data(&lineage)["webhookEvents"]["edges"][0]["node"]["entities"]
        .as_array()
        .expect("entities")
        .clone();
    assert!(
        entities
            .iter()
            .any(|e| e["entityType"] == "QueueEntry" && e["change"] == "created"),
        "{entities:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_page_of_a_hundred_appointments_costs_a_constant_number_of_statements() {
    let app = spawn_app().await;
    let query = "{ appointments(first: 100) { edges { node { id client { name } staff { name } service { name } } } } }";
    let mut costs = Vec::new();
    for target in [5, 100] {
        while appointment_count(&app).await < target {
            let n = appointment_count(&app).await;
            ingest_numbered_appointment(&app, n).await;
        }
        // The pool also serves the event tailer's periodic look; the cheapest of three runs
        // is the query's own cost.
        let mut cost = u64::MAX;
        let mut body = Value::Null;
        for _ in 0..3 {
            let before = app.statements.get();
            body = gql(&app, READ_KEY, query, json!({})).await;
            cost = cost.min(app.statements.get() - before);
        }
        assert_eq!(
            data(&body)["appointments"]["edges"]
                .as_array()
                .expect("edges")
                .len(),
            target as usize
        );
        assert!(
            data(&body)["appointments"]["edges"][target as usize - 1]["node"]["client"]["name"]
                .is_string()
        );
        costs.push(cost);
    }
    assert_eq!(
        costs[0], costs[1],
        "5 and 100 appointments cost the same number of statements: {costs:?}"
    );
    assert!(
        costs[1] <= 5,
        "page + client + staff + service loads: {costs:?}"
    );
    app.stop().await;
}

async fn appointment_count(app: &TestApp) -> u64 {
    use sea_orm::{EntityTrait, PaginatorTrait};
    entity::appointment::Entity::find()
        .count(&app.db)
        .await
        .expect("count")
}

/// A distinct vCita appointment with its own client, staff and service.
async fn ingest_numbered_appointment(app: &TestApp, n: u64) {
    let body = json!({
        "entity_name": "appointment",
        "event_type": "scheduled",
        "data": {
            "appointment_id": format!("appt{n:012}"),
            "client_id": format!("client{n:010}"),
            "staff_id": format!("staff{n:011}"),
            "service_id": format!("svc{n:013}"),
            "title": "Consultation",
            "start_time": "2024-03-14T10:00:00.000+02:00",
            "end_time": "2024-03-14T10:30:00.000+02:00",
        }
    });
    let response =
        crate::helpers::post_webhook(app, "vcita-main", body.to_string().into_bytes()).await;
    assert_eq!(response.status(), 200);
    // The references arrive bare; name the client so the nested field has data.
    let client = json!({"entity_name": "client", "event_type": "updated",
        "data": {"client_id": format!("client{n:010}"), "first_name": "Patient", "last_name": n.to_string(),
                 "updated_at": "2024-03-01T00:00:00Z"}});
    let response =
        crate::helpers::post_webhook(app, "vcita-main", client.to_string().into_bytes()).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn an_abusive_nested_query_is_refused_but_introspection_works() {
    let app = spawn_app().await;
    let deep = "{ queueEntries { edges { node { appointment { client { sourceEvents { entities { entityType } } } } stateHistory { sourceEvent { entities { entityId } } } } } } }";
    let ok = gql(&app, READ_KEY, deep, json!({})).await;
    assert!(
        ok.get("errors").is_none(),
        "a reasonable nested query passes: {ok}"
    );

    // The only cycles in this schema run through introspection: walk them past the limit.
    let mut abusive = String::from("{ __schema { types ");
    for _ in 0..10 {
        abusive.push_str("{ fields { type ");
    }
    abusive.push_str("{ name }");
    for _ in 0..10 {
        abusive.push_str(" } }");
    }
    abusive.push_str(" } }");
    let refused = gql(&app, READ_KEY, &abusive, json!({})).await;
    let message = refused["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.to_lowercase().contains("nested") || message.to_lowercase().contains("depth"),
        "{refused}"
    );

    let page = "appointments(first: 100) { edges { node { client { name } staff { name } service { name } location { name } sourceEvents { id } } } }";
    let wide = format!("{{ a: {page} b: {page} c: {page} d: {page} e: {page} }}");
    let wide = wide.as_str();
    let too_complex = gql(&app, ADMIN_KEY, wide, json!({})).await;
    let message = too_complex["errors"][0]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.to_lowercase().contains("complex"), "{too_complex}");

    let introspection = gql(&app, READ_KEY, INTROSPECTION_QUERY, json!({})).await;
    assert!(introspection.get("errors").is_none(), "{introspection}");
    assert_eq!(
        introspection["data"]["__schema"]["queryType"]["name"],
        "Query"
    );
    app.stop().await;
}

#[tokio::test]
async fn http_rules_keys_methods_and_media_types() {
    let app = spawn_app().await;
    let url = app.url("/graphql");
    let post = |key: Option<&'static str>| {
        let mut request = app
            .client
            .post(&url)
            .json(&json!({"query": "{ sources { id } }"}));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request
    };
    for key in [None, Some("not-a-key")] {
        let response = post(key).send().await.expect("request");
        assert_eq!(response.status(), 401);
        let body: Value = response.json().await.expect("json");
        assert_eq!(error_code(&body), "UNAUTHENTICATED");
    }

    let get = app
        .client
        .get(format!("{url}?query=%7Bsources%7Bid%7D%7D"))
        .bearer_auth(READ_KEY)
        .send()
        .await
        .expect("get");
    assert_eq!(get.status(), 200);
    assert_eq!(get.headers()["content-type"], "application/json");
    let body: Value = get.json().await.expect("json");
    assert_eq!(body["data"]["sources"][0]["id"], "chup-main");

    let mutation = app
        .client
        .get(format!("{url}?query=mutation%7Bx%7D"))
        .bearer_auth(READ_KEY)
        .send()
        .await
        .expect("get mutation");
    assert_eq!(mutation.status(), 405);

    let modern = app
        .client
        .post(&url)
        .bearer_auth(READ_KEY)
        .header("accept", "application/graphql-response+json")
        .json(&json!({"query": "{ nope }"}))
        .send()
        .await
        .expect("post");
    assert_eq!(
        modern.status(),
        400,
        "a validation error is a request error"
    );
    assert_eq!(
        modern.headers()["content-type"],
        "application/graphql-response+json"
    );
    let legacy = app
        .client
        .post(&url)
        .bearer_auth(READ_KEY)
        .json(&json!({"query": "{ nope }"}))
        .send()
        .await
        .expect("post");
    assert_eq!(legacy.status(), 200, "application/json answers 200");

    let not_json = app
        .client
        .post(&url)
        .bearer_auth(READ_KEY)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .expect("post");
    assert_eq!(not_json.status(), 400);
    let form = app
        .client
        .post(&url)
        .bearer_auth(READ_KEY)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(form.status(), 415);
    app.stop().await;
}

#[tokio::test]
async fn database_errors_never_reach_the_client() {
    let app = spawn_app().await;
    app.app_db.close_by_ref().await.expect("close pool");
    let body = gql(&app, READ_KEY, "{ clients { totalCount } }", json!({})).await;
    assert_eq!(error_code(&body), "INTERNAL");
    let message = body["errors"][0]["message"].as_str().expect("message");
    assert!(
        !message.to_lowercase().contains("pool") && !message.to_lowercase().contains("sql"),
        "{message}"
    );
}

/// graphql-js `getIntrospectionQuery()`, as GraphiQL sends it.
const INTROSPECTION_QUERY: &str = r#"
query IntrospectionQuery {
  __schema {
    queryType { name } mutationType { name } subscriptionType { name }
    types { ...FullType }
    directives { name description locations args { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description
  fields(includeDeprecated: true) { name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason }
  inputFields { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name
    ofType { kind name ofType { kind name ofType { kind name } } } } } } } }
}
"#;

/// The sorted vendor ids a connection `field` returns for `filter`.
async fn vendor_ids(app: &TestApp, field: &str, filter_type: &str, filter: Value) -> Vec<String> {
    let query = format!(
        "query($f: {filter_type}) {{ {field}(filter: $f, first: 100) {{ edges {{ node {{ vendorId }} }} }} }}"
    );
    let body = gql(app, READ_KEY, &query, json!({"f": filter})).await;
    let mut ids: Vec<String> = data(&body)[field]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| {
            e["node"]["vendorId"]
                .as_str()
                .expect("vendor id")
                .to_owned()
        })
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn every_list_filter_narrows_the_results() {
    let app = spawn_app().await;
    clinic_day(&app).await;
    ingest(&app, "chup", "live_queue_deleted").await; // ticket 19244 is deleted
    let ticket = gql(
        &app,
        READ_KEY,
        "{ queueEntries(filter: {states: [ARRIVED]}) { edges { node { vendorId client { id } staff { id } service { id } } } } }",
        json!({}),
    )
    .await;
    let arrived = &data(&ticket)["queueEntries"]["edges"][0]["node"];
    assert_eq!(arrived["vendorId"], "19242");
    let (client, staff, service) = (
        arrived["client"]["id"].clone(),
        arrived["staff"]["id"].clone(),
        arrived["service"]["id"].clone(),
    );

    let q = |filter: Value| vendor_ids(&app, "queueEntries", "QueueEntryFilter", filter);
    let all = q(json!({})).await;
    assert!(
        !all.contains(&"19244".to_owned()),
        "deleted tickets are left out by default: {all:?}"
    );
    assert!(
        q(json!({"includeDeleted": true}))
            .await
            .contains(&"19244".to_owned())
    );
    assert_eq!(q(json!({"clientId": client})).await, ["19242"]);
    assert!(
        q(json!({"staffId": staff}))
            .await
            .contains(&"19242".to_owned())
    );
    assert!(
        q(json!({"serviceId": service}))
            .await
            .contains(&"19242".to_owned())
    );
    assert_eq!(
        q(json!({"queueDate": "2024-01-18"})).await,
        Vec::<String>::new()
    );
    assert!(
        q(json!({"queueDate": "2024-01-17"}))
            .await
            .contains(&"19242".to_owned())
    );
    assert!(
        q(json!({"joined": {"day": "2024-01-17", "timeZone": "Asia/Kuala_Lumpur"}}))
            .await
            .contains(&"19242".to_owned())
    );
    assert_eq!(
        q(json!({"joined": {"from": "2030-01-01T00:00:00Z"}})).await,
        Vec::<String>::new()
    );
    assert_eq!(
        q(json!({"sourceIds": ["vsee-main"]})).await,
        Vec::<String>::new()
    );

    let a = |filter: Value| vendor_ids(&app, "appointments", "AppointmentFilter", filter);
    let timetap = gql(&app, READ_KEY, "{ appointments(filter: {sourceIds: [\"timetap-main\"]}) { edges { node { client { id } staff { id } } } } }", json!({})).await;
    let node = &data(&timetap)["appointments"]["edges"][0]["node"];
    assert_eq!(
        a(json!({"clientId": node["client"]["id"]})).await,
        ["10390617"]
    );
    assert_eq!(
        a(json!({"staffId": node["staff"]["id"]})).await,
        ["10390617"]
    );
    assert_eq!(
        a(json!({"statuses": ["CANCELLED"]})).await,
        Vec::<String>::new()
    );

    let v = |filter: Value| vendor_ids(&app, "visits", "VisitFilter", filter);
    let visit = gql(
        &app,
        READ_KEY,
        "{ visits { edges { node { patient { id } provider { id } scheduledStart } } } }",
        json!({}),
    )
    .await;
    let node = &data(&visit)["visits"]["edges"][0]["node"];
    assert_eq!(
        v(json!({"clientId": node["patient"]["id"]})).await,
        ["28540"]
    );
    if node["provider"]["id"].is_string() {
        assert_eq!(
            v(json!({"staffId": node["provider"]["id"]})).await,
            ["28540"]
        );
    }
    assert_eq!(
        v(json!({"scheduled": {"from": "2030-01-01T00:00:00Z"}})).await,
        Vec::<String>::new()
    );
    assert_eq!(
        v(json!({"statuses": ["PENDING"]})).await,
        Vec::<String>::new()
    );

    let p = |filter: Value| vendor_ids(&app, "payments", "PaymentFilter", filter);
    assert_eq!(
        p(json!({"states": ["refunded"]})).await,
        Vec::<String>::new()
    );
    let paid = p(json!({"states": ["paid"]})).await;
    assert_eq!(paid.len(), 1);
    let payer = gql(
        &app,
        READ_KEY,
        "{ payments { edges { node { client { id } } } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        p(json!({"clientId": data(&payer)["payments"]["edges"][0]["node"]["client"]["id"]})).await,
        paid
    );

    let inbox = |filter: Value| {
        let app = &app;
        async move {
            let body = gql(
                app,
                READ_KEY,
                "query($f: WebhookEventFilter) { webhookEvents(filter: $f) { totalCount } }",
                json!({"f": filter}),
            )
            .await;
            data(&body)["webhookEvents"]["totalCount"]
                .as_u64()
                .expect("count")
        }
    };
    assert_eq!(inbox(json!({"eventType": "live_queue_deleted"})).await, 1);
    assert_eq!(
        inbox(json!({"received": {"from": "2030-01-01T00:00:00Z"}})).await,
        0
    );
    assert_eq!(
        inbox(json!({"sourceIds": ["vcita-main"], "statuses": ["PROCESSED"]})).await,
        3
    );
    app.stop().await;
}
