//! `use entity::prelude::*` brings every entity in as its table's singular name (`Client`,
//! `QueueEntry`, …) plus the typed ids, which is what the `store` layer needs in scope.

pub use crate::alert::Entity as Alert;
pub use crate::api_key::Entity as ApiKey;
pub use crate::appointment::Entity as Appointment;
pub use crate::audit_log::Entity as AuditLog;
pub use crate::client::Entity as Client;
pub use crate::domain_event::Entity as DomainEvent;
pub use crate::entity_lineage::Entity as EntityLineage;
pub use crate::location::Entity as Location;
pub use crate::payment::Entity as Payment;
pub use crate::queue_entry::Entity as QueueEntry;
pub use crate::queue_state_history::Entity as QueueStateHistory;
pub use crate::service::Entity as Service;
pub use crate::source::Entity as Source;
pub use crate::staff::Entity as Staff;
pub use crate::vcita_subscription::Entity as VcitaSubscription;
pub use crate::visit::Entity as Visit;
pub use crate::webhook_event::Entity as WebhookEvent;

pub use crate::ids::*;
