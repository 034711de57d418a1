//! Statements that go to the database together.
//!
//! sqlx runs a SQLite connection on its own thread, and every statement is a round trip to it
//! and back: two thread wake-ups, which on this kind of VM cost more than a small statement
//! itself (measured: ≈50 µs per statement, most of a lone delivery's 1.2 ms batch). sqlx
//! accepts several `;`-separated statements in one call and binds each its own share of the
//! values, so on SQLite a [`Script`] is one round trip. PostgreSQL's extended protocol takes one
//! statement per call, so there the statements run one after another, as they would anyway.

use sea_orm::{ConnectionTrait, DbBackend, DbErr, QueryResult, Statement, Value, Values};

/// Statements run in order, as one call where the backend allows it.
pub(crate) struct Script {
    backend: DbBackend,
    statements: Vec<Statement>,
}

impl Script {
    pub(crate) fn new(backend: DbBackend) -> Script {
        Script {
            backend,
            statements: Vec::new(),
        }
    }

    pub(crate) fn backend(&self) -> DbBackend {
        self.backend
    }

    pub(crate) fn push(&mut self, statement: Statement) {
        self.statements.push(statement);
    }

    /// Runs every statement, in order, and returns the rows they returned, in order. A failing
    /// statement stops the rest; what ran before it is undone with the caller's transaction.
    pub(crate) async fn run<C: ConnectionTrait>(self, db: &C) -> Result<Vec<QueryResult>, DbErr> {
        match self.backend {
            DbBackend::Sqlite => match joined(self.statements) {
                Some(script) => db.query_all_raw(script).await,
                None => Ok(Vec::new()),
            },
            _ => {
                let mut rows = Vec::new();
                for statement in self.statements {
                    rows.extend(db.query_all_raw(statement).await?);
                }
                Ok(rows)
            }
        }
    }
}

/// One SQLite statement text of all of them; their `?` placeholders are positional, so the
/// values simply follow one another.
fn joined(statements: Vec<Statement>) -> Option<Statement> {
    let backend = statements.first()?.db_backend;
    let mut sql = String::with_capacity(statements.iter().map(|s| s.sql.len() + 2).sum());
    let mut values: Vec<Value> = Vec::new();
    for statement in statements {
        if !sql.is_empty() {
            sql.push_str(";\n");
        }
        sql.push_str(&statement.sql);
        if let Some(Values(more)) = statement.values {
            values.extend(more);
        }
    }
    Some(Statement::from_sql_and_values(backend, sql, values))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_statements_are_joined_with_their_values_in_order() {
        let first = Statement::from_sql_and_values(
            DbBackend::Sqlite,
            "INSERT INTO t (a, b) VALUES (?, ?)",
            [1.into(), "x".into()],
        );
        let second = Statement::from_string(DbBackend::Sqlite, "UPDATE t SET a = 2");
        let third = Statement::from_sql_and_values(
            DbBackend::Sqlite,
            "SELECT * FROM t WHERE a = ?",
            [2.into()],
        );
        let script = joined(vec![first, second, third]).expect("a script");
        assert_eq!(
            script.sql,
            "INSERT INTO t (a, b) VALUES (?, ?);\nUPDATE t SET a = 2;\nSELECT * FROM t WHERE a = ?"
        );
        assert_eq!(
            script.values,
            Some(Values(vec![1.into(), "x".into(), 2.into()]))
        );
        assert!(joined(Vec::new()).is_none());
    }

    async fn sqlite() -> sea_orm::DatabaseConnection {
        let db = sea_orm::Database::connect("sqlite::memory:")
            .await
            .expect("in-memory SQLite");
        db.execute_unprepared("CREATE TABLE t (a INTEGER NOT NULL, b TEXT NOT NULL)")
            .await
            .expect("table");
        db
    }

    fn insert(a: i64, b: Option<&str>) -> Statement {
        Statement::from_sql_and_values(
            DbBackend::Sqlite,
            "INSERT INTO t (a, b) VALUES (?, ?)",
            [a.into(), b.map(str::to_owned).into()],
        )
    }

    #[tokio::test]
    async fn a_sqlite_script_runs_every_statement_with_its_own_values_and_returns_their_rows() {
        let db = sqlite().await;
        let mut script = Script::new(DbBackend::Sqlite);
        script.push(insert(1, Some("one")));
        script.push(insert(2, Some("two")));
        script.push(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            "SELECT a, b FROM t WHERE a >= ? ORDER BY a",
            [1.into()],
        ));
        script.push(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            "INSERT INTO t (a, b) VALUES (?, ?) RETURNING a",
            [3.into(), "three".into()],
        ));
        let rows = script.run(&db).await.expect("script");
        let read: Vec<(i64, Option<String>)> = rows
            .iter()
            .map(|row| (row.try_get("", "a").expect("a"), row.try_get("", "b").ok()))
            .collect();
        assert_eq!(
            read,
            [
                (1, Some("one".to_owned())),
                (2, Some("two".to_owned())),
                (3, None)
            ]
        );
    }

    #[tokio::test]
    async fn a_failing_statement_stops_the_script_and_its_transaction_undoes_the_rest() {
        use sea_orm::TransactionTrait;
        let db = sqlite().await;
        let txn = db.begin().await.expect("begin");
        let mut script = Script::new(DbBackend::Sqlite);
        script.push(insert(1, Some("kept until rollback")));
        script.push(insert(2, None));
        script.push(insert(3, Some("never run")));
        let error = script.run(&txn).await.expect_err("NOT NULL violated");
        assert!(error.to_string().contains("NOT NULL"), "{error}");
        txn.rollback().await.expect("rollback");
        let count = db
            .query_one_raw(Statement::from_string(
                DbBackend::Sqlite,
                "SELECT COUNT(*) AS n FROM t",
            ))
            .await
            .expect("count")
            .expect("a row");
        assert_eq!(count.try_get::<i64>("", "n").expect("n"), 0);
    }
}
