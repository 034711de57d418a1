//! Bounds every GraphQL input value must meet, whatever the field: checked once per request on
//! the parsed document's literal arguments and on the variables, before validation and before
//! any resolver, over HTTP and both websocket protocols alike.
//!
//! Why here and not per argument: the two databases disagree on what they refuse. PostgreSQL
//! cannot store or compare a text with a NUL byte (an `INTERNAL` error) while SQLite happily
//! matches it; SQLite refuses more than 32,766 bound values in one statement while PostgreSQL
//! takes 65,535. Any string or list argument that reaches a filter can hit either difference, so
//! the rule is for all of them: no NUL in any string, at most [`MAX_LIST_ITEMS`] in any list.
//! The answer is `BAD_USER_INPUT` on both databases.

use std::convert::Infallible;
use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{
    ErrorExtensionValues, Positioned, ServerError, ServerResult, Value, Variables,
};
/// The parser's value type, which may hold variables (async-graphql does not re-export it).
use async_graphql_value::Value as LiteralValue;

/// Items in one list argument: far above any honest filter (a few sources or states), far
/// below either database's bound-parameter limit even with several lists in one query.
pub const MAX_LIST_ITEMS: usize = 1_000;

/// The schema extension that enforces the bounds (see the module doc).
pub struct InputBounds;

impl ExtensionFactory for InputBounds {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(InputBounds)
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for InputBounds {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let variables_ok = variables
            .iter()
            .try_for_each(|(name, value)| check_value(value, &format!("variable `${name}`")));
        variables_ok
            .and_then(|()| check_document(&document))
            .map_err(bad_user_input)?;
        Ok(document)
    }
}

fn bad_user_input(message: String) -> ServerError {
    let mut error = ServerError::new(message, None);
    let mut extensions = ErrorExtensionValues::default();
    extensions.set("code", "BAD_USER_INPUT");
    error.extensions = Some(extensions);
    error
}

/// `Err` names the first offending value and why.
pub fn check_value(value: &Value, place: &str) -> Result<(), String> {
    match value {
        Value::String(text) if text.contains('\0') => Err(format!(
            "{place} contains a NUL character, which no field accepts"
        )),
        Value::List(items) if items.len() > MAX_LIST_ITEMS => Err(format!(
            "{place} has {} items; a list argument takes at most {MAX_LIST_ITEMS}",
            items.len()
        )),
        Value::List(items) => items.iter().try_for_each(|item| check_value(item, place)),
        Value::Object(fields) => fields
            .iter()
            .try_for_each(|(name, field)| check_value(field, &format!("{place}.{name}"))),
        _ => Ok(()),
    }
}

/// Every literal argument of every operation and fragment, directives included.
fn check_document(document: &ExecutableDocument) -> Result<(), String> {
    for (_, operation) in document.operations.iter() {
        for definition in &operation.node.variable_definitions {
            if let Some(default) = &definition.node.default_value {
                let place = format!("the default of `${}`", definition.node.name.node);
                check_value(&default.node, &place)?;
            }
        }
        check_directives(&operation.node.directives)?;
        check_selection_set(&operation.node.selection_set)?;
    }
    for fragment in document.fragments.values() {
        check_directives(&fragment.node.directives)?;
        check_selection_set(&fragment.node.selection_set)?;
    }
    Ok(())
}

fn check_selection_set(set: &Positioned<SelectionSet>) -> Result<(), String> {
    for item in &set.node.items {
        match &item.node {
            Selection::Field(field) => {
                let field = &field.node;
                check_arguments(&field.arguments, &field.name.node)?;
                check_directives(&field.directives)?;
                check_selection_set(&field.selection_set)?;
            }
            Selection::FragmentSpread(spread) => check_directives(&spread.node.directives)?,
            Selection::InlineFragment(fragment) => {
                check_directives(&fragment.node.directives)?;
                check_selection_set(&fragment.node.selection_set)?;
            }
        }
    }
    Ok(())
}

fn check_directives(
    directives: &[Positioned<async_graphql::parser::types::Directive>],
) -> Result<(), String> {
    directives.iter().try_for_each(|directive| {
        check_arguments(&directive.node.arguments, &directive.node.name.node)
    })
}

/// Literal values only: variables inside them are checked with the variables.
fn check_arguments(
    arguments: &[(Positioned<async_graphql::Name>, Positioned<LiteralValue>)],
    owner: &str,
) -> Result<(), String> {
    arguments.iter().try_for_each(|(name, value)| {
        let literal = value
            .node
            .clone()
            .into_const_with(|_variable| Ok::<_, Infallible>(Value::Null));
        let Ok(literal) = literal;
        check_value(&literal, &format!("argument `{}` of `{owner}`", name.node))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nul_anywhere_in_a_value_is_refused_with_its_place() {
        let value = Value::from_json(serde_json::json!({"filter": {"states": ["paid", "x\u{0}"]}}))
            .expect("value");
        let error = check_value(&value, "variable `$v`").unwrap_err();
        assert!(error.contains("$v`.filter.states"), "{error}");
        assert!(check_value(&Value::from("plain"), "x").is_ok());
    }

    #[test]
    fn a_list_over_the_bound_is_refused() {
        let list = Value::List(vec![Value::from("a"); MAX_LIST_ITEMS + 1]);
        assert!(check_value(&list, "x").is_err());
        let list = Value::List(vec![Value::from("a"); MAX_LIST_ITEMS]);
        assert!(check_value(&list, "x").is_ok());
    }

    #[test]
    fn literal_arguments_in_fragments_and_directives_are_checked() {
        for query in [
            r#"{ clients(search: "\u0000") { totalCount } }"#,
            r#"query { ...F } fragment F on Query { clients(search: "a\u0000") { totalCount } }"#,
            r#"{ ... on Query { services(sourceIds: ["\u0000"]) { id } } }"#,
            r#"query($s: String = "\u0000") { clients(search: $s) { totalCount } }"#,
        ] {
            let document = async_graphql::parser::parse_query(query).expect("parses");
            assert!(check_document(&document).is_err(), "{query}");
        }
        let document =
            async_graphql::parser::parse_query(r#"{ clients(search: "ann") { totalCount } }"#)
                .expect("parses");
        assert!(check_document(&document).is_ok());
    }
}
