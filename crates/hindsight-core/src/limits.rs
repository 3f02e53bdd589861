//! The limits every entry point enforces on one behavior, with one wording.
//!
//! Ingest (each row of a log), the append route (each behavior of a
//! request) and the score route (each candidate's features) all check a
//! behavior against these limits through [`check_behavior`], so a value
//! that one of them refuses is refused by the others with the same message.
//! At ingest a violation is a rejected row (counted, reported with its line
//! number); over HTTP it is a 400 naming the field.
//!
//! The limits come from the index layout (`user << 24 | seq` in one u64
//! column) and from sanity: a timestamp is Unix seconds between 1970 and the
//! end of year 9999; a behavior carries at most
//! [`MAX_CATEGORIES_PER_BEHAVIOR`] categories and [`MAX_TAGS_PER_BEHAVIOR`]
//! tags (movielens-small's most-tagged movie has 173 distinct tags and its
//! most-genred 10 genres).

use std::fmt;

/// Bits of the per-user sequence number in the index's sort key.
pub const SEQ_BITS: u32 = 24;
/// The largest per-user sequence number: a user holds at most 2^24 behaviors.
pub const MAX_SEQ: u32 = (1 << SEQ_BITS) - 1;
/// The largest user id an index holds (2^40 - 1).
pub const MAX_USER_ID: u64 = (1 << (64 - SEQ_BITS)) - 1;
/// The earliest timestamp accepted: the Unix epoch.
pub const MIN_TIMESTAMP: i64 = 0;
/// The latest timestamp accepted: 9999-12-31T23:59:59Z in Unix seconds.
pub const MAX_TIMESTAMP: i64 = 253_402_300_799;
/// The most categories one behavior (or one item) may carry.
pub const MAX_CATEGORIES_PER_BEHAVIOR: usize = 256;
/// The most tags one behavior (or one item) may carry.
pub const MAX_TAGS_PER_BEHAVIOR: usize = 1024;

/// Which limit a value broke; `Display` is the message every entry point
/// prints (prefixed by where the value came from: a line number, a JSON
/// path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitViolation {
    /// A user id above [`MAX_USER_ID`].
    UserId(u64),
    /// A timestamp outside [`MIN_TIMESTAMP`]..=[`MAX_TIMESTAMP`].
    Timestamp(i64),
    /// More than [`MAX_CATEGORIES_PER_BEHAVIOR`] categories.
    TooManyCategories(usize),
    /// More than [`MAX_TAGS_PER_BEHAVIOR`] tags.
    TooManyTags(usize),
}

impl LimitViolation {
    /// A stable machine-readable code (the HTTP API's `error.code`).
    pub fn code(&self) -> &'static str {
        match self {
            LimitViolation::UserId(_) => "invalid_user_id",
            LimitViolation::Timestamp(_) => "invalid_timestamp",
            LimitViolation::TooManyCategories(_) => "too_many_categories",
            LimitViolation::TooManyTags(_) => "too_many_tags",
        }
    }
}

impl fmt::Display for LimitViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitViolation::UserId(u) => write!(
                f,
                "user id {u} is above the largest user id an index holds ({MAX_USER_ID}); \
                 map user ids to a smaller range"
            ),
            LimitViolation::Timestamp(t) => write!(
                f,
                "timestamp {t} is outside the supported range {MIN_TIMESTAMP}..={MAX_TIMESTAMP} \
                 (Unix seconds, 1970 to year 9999); check the timestamp column and its unit"
            ),
            LimitViolation::TooManyCategories(n) => write!(
                f,
                "{n} categories on one behavior, more than the {MAX_CATEGORIES_PER_BEHAVIOR} allowed; \
                 check the category column's delimiter"
            ),
            LimitViolation::TooManyTags(n) => write!(
                f,
                "{n} tags on one behavior, more than the {MAX_TAGS_PER_BEHAVIOR} allowed; \
                 check the tag column's delimiter"
            ),
        }
    }
}

impl std::error::Error for LimitViolation {}

/// Checks a user id against [`MAX_USER_ID`].
pub fn check_user(user: u64) -> Result<(), LimitViolation> {
    if user > MAX_USER_ID {
        return Err(LimitViolation::UserId(user));
    }
    Ok(())
}

/// Checks a timestamp against [`MIN_TIMESTAMP`]..=[`MAX_TIMESTAMP`].
pub fn check_timestamp(ts: i64) -> Result<(), LimitViolation> {
    if !(MIN_TIMESTAMP..=MAX_TIMESTAMP).contains(&ts) {
        return Err(LimitViolation::Timestamp(ts));
    }
    Ok(())
}

/// Checks an item's feature counts.
pub fn check_features(categories: usize, tags: usize) -> Result<(), LimitViolation> {
    if categories > MAX_CATEGORIES_PER_BEHAVIOR {
        return Err(LimitViolation::TooManyCategories(categories));
    }
    if tags > MAX_TAGS_PER_BEHAVIOR {
        return Err(LimitViolation::TooManyTags(tags));
    }
    Ok(())
}

/// Checks one behavior: user id, timestamp, feature counts, in that order.
pub fn check_behavior(
    user: u64,
    ts: i64,
    categories: usize,
    tags: usize,
) -> Result<(), LimitViolation> {
    check_user(user)?;
    check_timestamp(ts)?;
    check_features(categories, tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_inclusive() {
        assert_eq!(
            check_behavior(MAX_USER_ID, MAX_TIMESTAMP, 256, 1024),
            Ok(())
        );
        assert_eq!(check_behavior(0, 0, 0, 0), Ok(()));
        assert_eq!(
            check_behavior(MAX_USER_ID + 1, 0, 0, 0),
            Err(LimitViolation::UserId(MAX_USER_ID + 1))
        );
        assert_eq!(check_timestamp(-1), Err(LimitViolation::Timestamp(-1)));
        assert_eq!(
            check_timestamp(MAX_TIMESTAMP + 1),
            Err(LimitViolation::Timestamp(MAX_TIMESTAMP + 1))
        );
        assert_eq!(
            check_features(257, 0),
            Err(LimitViolation::TooManyCategories(257))
        );
        assert_eq!(
            check_features(0, 1025),
            Err(LimitViolation::TooManyTags(1025))
        );
    }

    #[test]
    fn user_id_bound_matches_the_sort_key() {
        // user << SEQ_BITS | seq must fit in a u64 for the largest user.
        assert_eq!((MAX_USER_ID << SEQ_BITS) >> SEQ_BITS, MAX_USER_ID);
        assert_eq!(
            MAX_USER_ID
                .checked_shl(SEQ_BITS)
                .map(|v| v | MAX_SEQ as u64),
            Some(u64::MAX)
        );
    }

    #[test]
    fn messages_say_what_to_do() {
        let m = LimitViolation::UserId(1 << 40).to_string();
        assert!(
            m.contains("1099511627776") && m.contains("smaller range"),
            "{m}"
        );
        assert_eq!(LimitViolation::Timestamp(-5).code(), "invalid_timestamp");
    }
}
