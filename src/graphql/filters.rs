//! Filter inputs of the list queries, and the date arithmetic they share: a clinic-local day in
//! an IANA zone becomes a UTC range, so "the appointments of 2024-03-12 in New York" means what
//! a front desk in New York means.

use async_graphql::{ID, InputObject};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};

use super::error::{ApiError, ApiResult};
use super::types::{AppointmentStatusKind, QueueStateKind, VisitStatusKind, WebhookStatus};

/// `[from, to)` in UTC, either side open.
pub type UtcBounds = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// A time range: either a UTC range, or a clinic-local day in a zone.
#[derive(InputObject, Default, Clone)]
pub struct TimeRange {
    /// Inclusive lower bound (UTC instant).
    pub from: Option<DateTime<Utc>>,
    /// Exclusive upper bound (UTC instant).
    pub to: Option<DateTime<Utc>>,
    /// A clinic-local calendar day; needs `timeZone`.
    pub day: Option<NaiveDate>,
    /// IANA zone of `day`, e.g. `Asia/Kuala_Lumpur`.
    pub time_zone: Option<String>,
}

impl TimeRange {
    /// `[from, to)` in UTC, either bound open.
    pub fn bounds(&self) -> ApiResult<UtcBounds> {
        match (&self.day, &self.time_zone) {
            (None, None) => Ok((self.from, self.to)),
            (Some(_), None) => Err(ApiError::bad_input("`day` needs a `timeZone`")),
            (None, Some(_)) => Err(ApiError::bad_input("`timeZone` is only used with `day`")),
            (Some(day), Some(zone)) => {
                if self.from.is_some() || self.to.is_some() {
                    return Err(ApiError::bad_input("give `day` or `from`/`to`, not both"));
                }
                let (start, end) = local_day_bounds(*day, zone)?;
                Ok((Some(start), Some(end)))
            }
        }
    }
}

/// The UTC instants at which a local day starts and the next one starts.
pub fn local_day_bounds(day: NaiveDate, zone: &str) -> ApiResult<(DateTime<Utc>, DateTime<Utc>)> {
    let tz: chrono_tz::Tz = zone
        .parse()
        .map_err(|_| ApiError::bad_input(format!("{zone:?} is not an IANA time zone")))?;
    let start_of = |date: NaiveDate| -> ApiResult<DateTime<Utc>> {
        let midnight = date.and_hms_opt(0, 0, 0).ok_or(ApiError::Internal)?;
        // A zone may skip midnight (DST); the earliest valid instant of the day is its start.
        tz.from_local_datetime(&midnight)
            .earliest()
            .or_else(|| {
                tz.from_local_datetime(&(midnight + chrono::Duration::hours(1)))
                    .earliest()
            })
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| ApiError::bad_input("that day has no midnight in that zone"))
    };
    let next = day
        .succ_opt()
        .ok_or_else(|| ApiError::bad_input("day out of range"))?;
    Ok((start_of(day)?, start_of(next)?))
}

#[derive(InputObject, Default, Clone)]
pub struct QueueEntryFilter {
    pub source_ids: Option<Vec<String>>,
    pub states: Option<Vec<QueueStateKind>>,
    pub service_id: Option<ID>,
    pub staff_id: Option<ID>,
    pub client_id: Option<ID>,
    /// The clinic-local queue day.
    pub queue_date: Option<NaiveDate>,
    /// When the patient joined the queue.
    pub joined: Option<TimeRange>,
    /// Include tickets Chup deleted (default false).
    pub include_deleted: Option<bool>,
}

#[derive(InputObject, Default, Clone)]
pub struct AppointmentFilter {
    pub source_ids: Option<Vec<String>>,
    pub statuses: Option<Vec<AppointmentStatusKind>>,
    pub service_id: Option<ID>,
    pub staff_id: Option<ID>,
    pub client_id: Option<ID>,
    /// On `startsAt`.
    pub starts: Option<TimeRange>,
    pub include_deleted: Option<bool>,
}

#[derive(InputObject, Default, Clone)]
pub struct VisitFilter {
    pub source_ids: Option<Vec<String>>,
    pub statuses: Option<Vec<VisitStatusKind>>,
    /// The provider.
    pub staff_id: Option<ID>,
    /// The patient.
    pub client_id: Option<ID>,
    /// On `scheduledStart`.
    pub scheduled: Option<TimeRange>,
}

#[derive(InputObject, Default, Clone)]
pub struct PaymentFilter {
    pub source_ids: Option<Vec<String>>,
    pub client_id: Option<ID>,
    /// Vendor payment states as sent, e.g. `paid`.
    pub states: Option<Vec<String>>,
}

#[derive(InputObject, Default, Clone)]
pub struct WebhookEventFilter {
    pub source_ids: Option<Vec<String>>,
    pub statuses: Option<Vec<WebhookStatus>>,
    pub event_type: Option<String>,
    pub received: Option<TimeRange>,
}

/// Longest `clients(search:)` text, in characters. A name, phone number or email is far
/// shorter; SQLite refuses a LIKE pattern over 50,000 bytes (`INTERNAL` before this bound).
pub const MAX_SEARCH_CHARS: usize = 200;

/// A validated `clients(search:)`: trimmed, lower-cased, bounded, without control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSearch {
    /// `%text%`, with `\`, `%` and `_` escaped by `\`.
    pub like_pattern: String,
    /// The digits of the text, when there are enough to search phone numbers by.
    pub phone_digits: Option<String>,
}

impl ClientSearch {
    /// `None` for no search (absent or blank).
    pub fn parse(search: Option<&str>) -> ApiResult<Option<ClientSearch>> {
        let Some(text) = search.map(str::trim).filter(|text| !text.is_empty()) else {
            return Ok(None);
        };
        let length = text.chars().count();
        if length > MAX_SEARCH_CHARS {
            return Err(ApiError::bad_input(format!(
                "`search` is {length} characters; at most {MAX_SEARCH_CHARS}"
            )));
        }
        if text.chars().any(char::is_control) {
            return Err(ApiError::bad_input(
                "`search` contains a control character (such as NUL)",
            ));
        }
        let text = text.to_lowercase();
        let escaped = text
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        let digits: String = text.chars().filter(char::is_ascii_digit).collect();
        Ok(Some(ClientSearch {
            like_pattern: format!("%{escaped}%"),
            phone_digits: (digits.len() >= 3).then_some(digits),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_search_is_trimmed_lowered_and_escaped() {
        let search = ClientSearch::parse(Some("  Ann_%\\ 555-12 "))
            .expect("valid")
            .expect("some");
        assert_eq!(search.like_pattern, "%ann\\_\\%\\\\ 555-12%");
        assert_eq!(search.phone_digits.as_deref(), Some("55512"));
        assert_eq!(ClientSearch::parse(Some("   ")).expect("valid"), None);
        assert_eq!(ClientSearch::parse(None).expect("valid"), None);
    }

    #[test]
    fn a_long_or_control_character_search_is_bad_input() {
        let long = "x".repeat(MAX_SEARCH_CHARS + 1);
        for text in [long.as_str(), "\u{0}", "a\u{0}b", "a\u{7}"] {
            let error = ClientSearch::parse(Some(text)).unwrap_err();
            assert_eq!(error.code(), "BAD_USER_INPUT", "{text:?}");
        }
        assert!(ClientSearch::parse(Some(&"x".repeat(MAX_SEARCH_CHARS))).is_ok());
    }

    #[test]
    fn a_local_day_in_kuala_lumpur_starts_at_16_utc_the_day_before() {
        let day = NaiveDate::from_ymd_opt(2024, 1, 17).expect("date");
        let (start, end) = local_day_bounds(day, "Asia/Kuala_Lumpur").expect("bounds");
        assert_eq!(start.to_rfc3339(), "2024-01-16T16:00:00+00:00");
        assert_eq!(end.to_rfc3339(), "2024-01-17T16:00:00+00:00");
    }

    #[test]
    fn a_dst_day_in_new_york_is_23_hours_long() {
        let day = NaiveDate::from_ymd_opt(2024, 3, 10).expect("date");
        let (start, end) = local_day_bounds(day, "America/New_York").expect("bounds");
        assert_eq!((end - start).num_hours(), 23);
    }

    #[test]
    fn an_unknown_zone_is_bad_input() {
        let day = NaiveDate::from_ymd_opt(2024, 3, 10).expect("date");
        assert_eq!(
            local_day_bounds(day, "Mars/Olympus").unwrap_err().code(),
            "BAD_USER_INPUT"
        );
    }
}
