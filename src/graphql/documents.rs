//! Parsed GraphQL documents by query text, shared by every HTTP request.
//!
//! Dashboards and the HIS send the same few query texts over and over, and parsing one (a pest
//! grammar) was 6.6 % of a 50-entry board request's instructions under callgrind
//! (bench/RESULTS.md, sixth session); cloning a parsed document costs a fraction of that.
//! Validation, limits and execution still run per request: only the text → syntax tree step is
//! shared. Bounded in entries and in query size, so arbitrary texts cannot grow it: when full it
//! starts over (the texts in use come back within a request each).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_graphql::parser::types::ExecutableDocument;

/// How many distinct query texts are kept.
const MAX_DOCUMENTS: usize = 256;
/// Longer query texts are parsed every time (a dashboard's queries are far shorter).
const MAX_QUERY_BYTES: usize = 8 * 1024;

#[derive(Default)]
pub struct DocumentCache {
    documents: Mutex<HashMap<String, Arc<ExecutableDocument>>>,
}

impl DocumentCache {
    /// Gives `request` its parsed document: from the cache when this text was parsed before,
    /// else parsed now and kept. A text that does not parse is left to execution, which
    /// reports the syntax error as usual. Returns the shared document (the handler puts the
    /// answer in its order afterwards, see `order`) without another copy of it.
    pub fn prepare(&self, request: &mut async_graphql::Request) -> Option<Arc<ExecutableDocument>> {
        if request.query.len() > MAX_QUERY_BYTES {
            return request.parsed_query().ok().cloned().map(Arc::new);
        }
        let cached = self.lock().get(&request.query).cloned();
        if let Some(document) = cached {
            request.set_parsed_query(ExecutableDocument::clone(&document));
            return Some(document);
        }
        let document = Arc::new(request.parsed_query().ok()?.clone());
        let mut documents = self.lock();
        if documents.len() >= MAX_DOCUMENTS {
            documents.clear();
        }
        documents.insert(request.query.clone(), document.clone());
        Some(document)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<ExecutableDocument>>> {
        self.documents
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::{EmptyMutation, EmptySubscription, Object, Request, Schema};

    struct Query;

    #[Object]
    impl Query {
        async fn greeting(&self, name: String) -> String {
            format!("hello {name}")
        }
    }

    fn schema() -> Schema<Query, EmptyMutation, EmptySubscription> {
        Schema::new(Query, EmptyMutation, EmptySubscription)
    }

    #[tokio::test]
    async fn a_cached_document_answers_like_a_fresh_parse_with_each_requests_variables() {
        let cache = DocumentCache::default();
        let text = "query($n: String!) { greeting(name: $n) }";
        for name in ["ada", "grace"] {
            let mut request = Request::new(text).variables(async_graphql::Variables::from_json(
                serde_json::json!({"n": name}),
            ));
            cache.prepare(&mut request);
            let answer = schema()
                .execute(request)
                .await
                .into_result()
                .expect("answer");
            assert_eq!(
                answer.data.into_json().expect("json"),
                serde_json::json!({"greeting": format!("hello {name}")})
            );
        }
        assert_eq!(cache.len(), 1, "one text, one parse kept");
    }

    #[tokio::test]
    async fn a_syntax_error_is_not_kept_and_still_reported() {
        let cache = DocumentCache::default();
        let mut request = Request::new("{ greeting(name: ");
        cache.prepare(&mut request);
        assert_eq!(cache.len(), 0);
        let answer = schema().execute(request).await;
        assert!(
            answer.errors[0].message.contains("expected"),
            "{:?}",
            answer.errors
        );
    }

    #[test]
    fn it_stays_within_its_bounds() {
        let cache = DocumentCache::default();
        for i in 0..(MAX_DOCUMENTS + 10) {
            cache.prepare(&mut Request::new(format!(
                "{{ a{i}: greeting(name: \"x\") }}"
            )));
            assert!(cache.len() <= MAX_DOCUMENTS);
        }
        let long = format!("{{ greeting(name: \"{}\") }}", "x".repeat(MAX_QUERY_BYTES));
        let before = cache.len();
        cache.prepare(&mut Request::new(long));
        assert_eq!(cache.len(), before, "a long text is not kept");
    }
}
