//! Conversions between wire and domain types that both services make:
//! `From` impls where the orphan rule allows (the generated enums are ours),
//! small functions where it does not (`Timestamp` and `Millis` are both
//! foreign here).

use cred_core::Error;
use cred_core::clock::Millis;
use cred_core::model::Environment;

use crate::authd::v1 as authd;
use crate::introspect::v1 as introspect;

/// Milliseconds since the epoch as a `Timestamp`.
pub fn timestamp(ms: Millis) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: ms.div_euclid(1000), nanos: (ms.rem_euclid(1000) * 1_000_000) as i32 }
}

/// An optional `Timestamp` field in milliseconds since the epoch; one out of
/// range (before 1970, after 9999, or with bad nanos) is an error naming
/// `field`.
pub fn millis(field: &'static str, t: Option<prost_types::Timestamp>) -> Result<Option<Millis>, Error> {
    let Some(t) = t else { return Ok(None) };
    if !(0..1_000_000_000).contains(&t.nanos) || !(0..=253_402_300_799).contains(&t.seconds) {
        return Err(Error::invalid(field, "must be a valid timestamp between 1970 and 9999"));
    }
    Ok(Some(t.seconds * 1000 + i64::from(t.nanos / 1_000_000)))
}

/// One macro for the two packages' `Environment` enums, which are the same
/// three values in two proto packages.
macro_rules! environment {
    ($pb:path) => {
        impl From<Environment> for $pb {
            fn from(e: Environment) -> Self {
                use $pb as Pb;
                match e {
                    Environment::Production => Pb::Production,
                    Environment::Test => Pb::Test,
                }
            }
        }

        /// `None` for UNSPECIFIED: whether that is allowed is the field's
        /// rule, not the type's.
        impl From<$pb> for Option<Environment> {
            fn from(e: $pb) -> Self {
                use $pb as Pb;
                match e {
                    Pb::Unspecified => None,
                    Pb::Production => Some(Environment::Production),
                    Pb::Test => Some(Environment::Test),
                }
            }
        }
    };
}

environment!(authd::Environment);
environment!(introspect::Environment);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip() {
        assert_eq!(millis("t", Some(timestamp(1_700_000_000_123))).unwrap(), Some(1_700_000_000_123));
        assert_eq!(millis("t", None).unwrap(), None);
        let e = millis("expire_time", Some(prost_types::Timestamp { seconds: -1, nanos: 0 })).unwrap_err();
        assert!(e.to_string().starts_with("expire_time:"), "{e}");
    }

    #[test]
    fn environments_round_trip() {
        for e in [Environment::Production, Environment::Test] {
            assert_eq!(Option::<Environment>::from(authd::Environment::from(e)), Some(e));
            assert_eq!(Option::<Environment>::from(introspect::Environment::from(e)), Some(e));
        }
        assert_eq!(Option::<Environment>::from(introspect::Environment::Unspecified), None);
    }
}
