//! Global object ids (`node(id)`): `"<Type>:<row id>"`. Clients treat them as opaque; the
//! readable form makes logs and support tickets easier and costs nothing.

use async_graphql::ID;

use super::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    Client,
    Staff,
    Service,
    Location,
    QueueEntry,
    Appointment,
    Visit,
    Payment,
    WebhookEvent,
    Alert,
    VcitaSubscription,
}

impl NodeKind {
    const ALL: [NodeKind; 11] = [
        NodeKind::Client,
        NodeKind::Staff,
        NodeKind::Service,
        NodeKind::Location,
        NodeKind::QueueEntry,
        NodeKind::Appointment,
        NodeKind::Visit,
        NodeKind::Payment,
        NodeKind::WebhookEvent,
        NodeKind::Alert,
        NodeKind::VcitaSubscription,
    ];

    pub fn name(self) -> &'static str {
        match self {
            NodeKind::Client => "Client",
            NodeKind::Staff => "Staff",
            NodeKind::Service => "Service",
            NodeKind::Location => "Location",
            NodeKind::QueueEntry => "QueueEntry",
            NodeKind::Appointment => "Appointment",
            NodeKind::Visit => "Visit",
            NodeKind::Payment => "Payment",
            NodeKind::WebhookEvent => "WebhookEvent",
            NodeKind::Alert => "Alert",
            NodeKind::VcitaSubscription => "VcitaSubscription",
        }
    }

    pub fn parse(name: &str) -> Option<NodeKind> {
        NodeKind::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

pub fn encode(kind: NodeKind, id: impl Into<i64>) -> ID {
    ID(format!("{}:{}", kind.name(), id.into()))
}

pub fn decode(id: &ID) -> Result<(NodeKind, i64), ApiError> {
    let invalid = || ApiError::bad_input(format!("{:?} is not a CareBridge id", id.as_str()));
    let (kind, number) = id.split_once(':').ok_or_else(invalid)?;
    let kind = NodeKind::parse(kind).ok_or_else(invalid)?;
    let number = number.parse::<i64>().map_err(|_| invalid())?;
    Ok((kind, number))
}

/// Decodes an id that must be of one kind (e.g. `serviceId`).
pub fn decode_as(id: &ID, expected: NodeKind) -> Result<i64, ApiError> {
    match decode(id)? {
        (kind, number) if kind == expected => Ok(number),
        (kind, _) => Err(ApiError::bad_input(format!(
            "{:?} is a {} id, expected a {} id",
            id.as_str(),
            kind.name(),
            expected.name()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        let id = encode(NodeKind::QueueEntry, 42);
        assert_eq!(id.as_str(), "QueueEntry:42");
        assert_eq!(decode(&id).expect("valid"), (NodeKind::QueueEntry, 42));
    }

    #[test]
    fn malformed_and_mismatched_ids_are_bad_input() {
        for text in ["", "42", "Nope:1", "Client:x", "Client:"] {
            assert_eq!(
                decode(&ID(text.into())).unwrap_err().code(),
                "BAD_USER_INPUT",
                "{text}"
            );
        }
        let error = decode_as(&encode(NodeKind::Client, 1), NodeKind::Service).unwrap_err();
        assert!(error.message().contains("expected a Service id"));
    }
}
