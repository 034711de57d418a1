//! Response fields in the order the query asked for them. async-graphql resolves the fields of
//! an object concurrently and collects them as they finish (`FuturesUnordered`), so two root
//! fields that each wait for the database come back in whichever order their statements
//! finished. The GraphQL spec asks for the request's order, and clients that compare answers
//! as text or show them as returned rely on it; this puts every object of `data` back in the
//! order of its selection set (fragments and inline fragments expanded in place, a key selected
//! twice kept at its first place). Pure: no I/O, one pass over the answer.

use std::collections::HashMap;

use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, FragmentDefinition, OperationDefinition, Selection,
    SelectionSet,
};
use async_graphql::{Name, Positioned, Value};

type Fragments = HashMap<Name, Positioned<FragmentDefinition>>;

/// Reorders `data`, the answer of `operation_name`'s operation in `document`. Does nothing when
/// the operation cannot be found (execution has then already reported why).
pub fn in_query_order(
    data: &mut Value,
    document: &ExecutableDocument,
    operation_name: Option<&str>,
) {
    let Some(operation) = operation(document, operation_name) else {
        return;
    };
    apply(
        data,
        &[&operation.node.selection_set.node],
        &document.fragments,
    );
}

fn operation<'a>(
    document: &'a ExecutableDocument,
    name: Option<&str>,
) -> Option<&'a Positioned<OperationDefinition>> {
    match (&document.operations, name) {
        (DocumentOperations::Single(operation), _) => Some(operation),
        (DocumentOperations::Multiple(operations), Some(name)) => operations.get(name),
        (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => {
            operations.values().next()
        }
        (DocumentOperations::Multiple(_), None) => None,
    }
}

/// Each response key of the merged selection sets, in order, with the selection sets of its
/// fields (one key may be selected by several fragments, each with its own sub-selection).
type Plan<'a> = Vec<(&'a Name, Vec<&'a SelectionSet>)>;

fn plan<'a>(sets: &[&'a SelectionSet], fragments: &'a Fragments) -> Plan<'a> {
    let mut plan: Plan<'a> = Vec::new();
    for set in sets {
        collect(set, fragments, &mut plan, 0);
    }
    plan
}

/// Fragment spreads nest at most this deep here: validation has refused cycles and the depth
/// limit bounds real nesting, so this only guards against a document that skipped both.
const MAX_FRAGMENT_NESTING: usize = 64;

fn collect<'a>(
    set: &'a SelectionSet,
    fragments: &'a Fragments,
    plan: &mut Plan<'a>,
    nesting: usize,
) {
    if nesting > MAX_FRAGMENT_NESTING {
        return;
    }
    for item in &set.items {
        match &item.node {
            Selection::Field(field) => {
                let key = &field.node.response_key().node;
                let sub = &field.node.selection_set.node;
                match plan.iter_mut().find(|(seen, _)| *seen == key) {
                    Some((_, subs)) => subs.push(sub),
                    None => plan.push((key, vec![sub])),
                }
            }
            Selection::FragmentSpread(spread) => {
                if let Some(fragment) = fragments.get(&spread.node.fragment_name.node) {
                    collect(
                        &fragment.node.selection_set.node,
                        fragments,
                        plan,
                        nesting + 1,
                    );
                }
            }
            Selection::InlineFragment(inline) => {
                collect(
                    &inline.node.selection_set.node,
                    fragments,
                    plan,
                    nesting + 1,
                );
            }
        }
    }
}

fn apply(value: &mut Value, sets: &[&SelectionSet], fragments: &Fragments) {
    match value {
        Value::List(items) => {
            let plan = plan(sets, fragments);
            for item in items {
                apply_planned(item, &plan, fragments);
            }
        }
        Value::Object(_) => apply_planned(value, &plan(sets, fragments), fragments),
        _ => {}
    }
}

fn apply_planned(value: &mut Value, plan: &Plan<'_>, fragments: &Fragments) {
    match value {
        Value::List(items) => {
            for item in items {
                apply_planned(item, plan, fragments);
            }
        }
        Value::Object(fields) => {
            let mut unordered = std::mem::take(fields);
            for (key, sets) in plan {
                if let Some((key, mut child)) = unordered.shift_remove_entry(*key) {
                    if sets.iter().any(|set| !set.items.is_empty()) {
                        apply(&mut child, sets, fragments);
                    }
                    fields.insert(key, child);
                }
            }
            // Anything the plan did not name (none expected) keeps its place after the rest.
            fields.extend(unordered);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `data` as JSON text, so its key order is kept (a `serde_json::Value` would sort it).
    fn reordered(query: &str, data: &str) -> String {
        let document = async_graphql::parser::parse_query(query).expect("query parses");
        let mut value: Value = serde_json::from_str(data).expect("value");
        in_query_order(&mut value, &document, None);
        serde_json::to_string(&value).expect("json")
    }

    #[test]
    fn root_and_nested_fields_follow_the_query_through_fragments_and_aliases() {
        let query = "query { b: sources { ...S } a: services { name id } }
                     fragment S on Source { vendor ... on Source { id } }";
        let data = r#"{"a":[{"id":1,"name":"x"}],"b":[{"id":"s","vendor":"chup"},{"id":"t","vendor":"vsee"}]}"#;
        assert_eq!(
            reordered(query, data),
            r#"{"b":[{"vendor":"chup","id":"s"},{"vendor":"vsee","id":"t"}],"a":[{"name":"x","id":1}]}"#
        );
    }

    #[test]
    fn a_key_selected_twice_keeps_its_first_place_and_both_sub_selections() {
        let query = "{ q { x { b } } p q { x { a } } }";
        let data = r#"{"p":1,"q":{"x":{"a":1,"b":2}}}"#;
        assert_eq!(reordered(query, data), r#"{"q":{"x":{"b":2,"a":1}},"p":1}"#);
    }

    #[test]
    fn nulls_and_unknown_operations_are_left_alone() {
        let document =
            async_graphql::parser::parse_query("query A { a } query B { b }").expect("parses");
        let mut value: Value = serde_json::from_str(r#"{"b":1,"a":2}"#).expect("value");
        in_query_order(&mut value, &document, None);
        assert_eq!(
            serde_json::to_string(&value).expect("json"),
            r#"{"b":1,"a":2}"#
        );
        let mut null = Value::Null;
        in_query_order(&mut null, &document, Some("A"));
        assert_eq!(null, Value::Null);
    }
}
