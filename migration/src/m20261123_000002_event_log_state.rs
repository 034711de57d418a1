//! `event_log_state`: named cursors about the event log (e.g. `pruned_through`, the highest
//! cursor retention removed), so a subscriber resuming from a pruned cursor is told to resync.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum EventLogState {
    Table,
    Name,
    Cursor,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(EventLogState::Table)
                    .col(text(EventLogState::Name).primary_key())
                    .col(big_integer(EventLogState::Cursor))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(EventLogState::Table).to_owned())
            .await
    }
}
