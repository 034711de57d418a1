//! Signed Chup `live_queue_updated` bodies, the same shape as `bench/gen_bodies.py` makes for
//! the ingest benchmark, signed with the gateway's own signer (`vendors::chup::sign_chup`), so a
//! delivery here is byte-for-byte what Chup would send.

/// Chup ticket ids start here; ticket `TICKET_BASE + n` is delivery `n`.
pub const TICKET_BASE: u64 = 1_000_000;

const STATES: [(&str, u8, &str); 5] = [
    ("WAITING", 1, "In Queue"),
    ("ARRIVED", 3, "Arrived"),
    ("SERVING", 4, "Serving"),
    ("SERVED", 5, "Served"),
    ("PHARMACY", 7, "Pharmacy"),
];

/// The Chup service id delivery `n` belongs to when deliveries rotate over `services`.
pub fn service_of(n: u64, services: u64) -> u64 {
    200 + n % services.max(1)
}

/// Delivery `n`: a new ticket (`TICKET_BASE + n`) of service `service`, signed with `secret`.
pub fn chup_body(n: u64, service: u64, secret: &[u8]) -> Vec<u8> {
    let (name, value, label) = STATES[(n % STATES.len() as u64) as usize];
    let client = 100_000 + n % 2000;
    let staff = 300 + n % 20;
    let (minute, second) = ((n % 3600) / 60, n % 60);
    let hour = (n / 3600) % 24;
    let stamp = format!("2024-01-17T{hour:02}:{minute:02}:{second:02}+08:00");
    let data = serde_json::json!({
        "id": TICKET_BASE + n,
        "appointment_id": null,
        "appointment_date": null,
        "appointment_time": null,
        "registered_client_id": client,
        "registered_client_name": format!("Client {client}"),
        "registered_client_phone": format!("9230939{client:05}"),
        "client_name": format!("Client {client}"),
        "state": {"name": name, "value": value},
        "state_name": label,
        "service_id": service,
        "service_name": format!("Service {service}"),
        "staff_id": staff,
        "staff_name": format!("Staff {staff}"),
        "notes": {"items": [{"id": 5000 + n, "type": "alert",
                             "message": "Please proceed to Counter 2 / Kaunter 2",
                             "created_by": "Registration", "created_at": stamp}],
                  "escapeWhenCastingToString": false},
        "created_at": stamp,
        "updated_at": stamp,
    });
    let payload = serde_json::json!({
        "event": "live_queue_updated",
        "timestamp": stamp,
        "data": data,
    });
    let unsigned = format!(r#"{{"payload":{payload}}}"#);
    carebridge::vendors::chup::sign_chup(unsigned.as_bytes(), secret)
}

/// The ticket number in a subscription message (`"vendorId":"1000123"`), without parsing the
/// whole message: the load client reads thousands of these per second.
pub fn ticket_in(message: &str) -> Option<u64> {
    let start = message.find(r#""vendorId":""#)? + r#""vendorId":""#.len();
    let digits = &message[start..];
    let end = digits.find('"')?;
    digits[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_verify_with_the_gateways_verifier() {
        use carebridge::domain::Vendor;
        use carebridge::vendors::{Credentials, Unverified, Webhook};
        let body = chup_body(7, 203, b"secret");
        let webhook = Webhook::<Unverified>::new(Vendor::Chup, body.into(), None);
        assert!(webhook.verify(Credentials::HmacKey(b"secret")).is_ok());
    }

    #[test]
    fn the_ticket_is_read_from_a_message() {
        let message = r#"{"type":"next","id":"1","payload":{"data":{"queueChanged":{"id":"QueueEntry:1","vendorId":"1000042"}}}}"#;
        assert_eq!(ticket_in(message), Some(1_000_042));
        assert_eq!(ticket_in(r#"{"type":"next"}"#), None);
    }
}
