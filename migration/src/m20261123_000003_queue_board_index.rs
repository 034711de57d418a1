//! The index the dashboard's board query walks: `queue(serviceId, date)` asks for one service's
//! tickets of one clinic-local day in queue order (`vendor_created_at`, then `id`). The first
//! migration's `(service_id, queue_date)` index finds the rows, but every board then needs a
//! sort; with the order columns in the index the rows come out of it already ordered (an
//! index scan without a sort on PostgreSQL, no temporary b-tree on SQLite) however large the
//! table grows. It replaces the old index, of which it is an extension (every query the old one
//! served, by service or by service and day, uses the new one's prefix).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum QueueEntries {
    Table,
    ServiceId,
    QueueDate,
    VendorCreatedAt,
    Id,
}

const OLD: &str = "idx_queue_entries_service_date";
const NEW: &str = "idx_queue_entries_service_date_order";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(NEW)
                    .table(QueueEntries::Table)
                    .col(QueueEntries::ServiceId)
                    .col(QueueEntries::QueueDate)
                    .col(QueueEntries::VendorCreatedAt)
                    .col(QueueEntries::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name(OLD)
                    .table(QueueEntries::Table)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(OLD)
                    .table(QueueEntries::Table)
                    .col(QueueEntries::ServiceId)
                    .col(QueueEntries::QueueDate)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name(NEW)
                    .table(QueueEntries::Table)
                    .to_owned(),
            )
            .await
    }
}
