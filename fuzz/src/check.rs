//! The verdict rule of the request targets: a call must fail with
//! INVALID_ARGUMENT exactly when the oracle finds a bad field, naming one of
//! them; other failures only with the codes the RPC allows; an unusable
//! bearer always UNAUTHENTICATED.

use tonic::{Code, Response, Status};

use crate::status;

/// The oracle's view of one request.
pub struct Expect {
    /// The request message's fields (an INVALID_ARGUMENT names one).
    pub fields: &'static [&'static str],
    /// Fields the oracle finds bad.
    pub bad: Vec<&'static str>,
    /// Codes the RPC may fail with besides INVALID_ARGUMENT.
    pub allowed: &'static [Code],
    /// The bearer is not usable: nothing else matters.
    pub unauthenticated: bool,
    /// The oracle cannot decide (a clock edge): check codes only.
    pub undecided: bool,
}

impl Expect {
    pub fn new(fields: &'static [&'static str], allowed: &'static [Code]) -> Expect {
        Expect { fields, bad: Vec::new(), allowed, unauthenticated: false, undecided: false }
    }

    /// Marks `field` bad when `bad` holds.
    pub fn bad_if(&mut self, bad: bool, field: &'static str) -> &mut Expect {
        if bad {
            self.bad.push(field);
        }
        self
    }

    /// Checks a call's result; returns the response when it succeeded.
    pub fn check<T: std::fmt::Debug>(&self, r: Result<Response<T>, Status>) -> Option<T> {
        if self.unauthenticated {
            match r {
                Ok(resp) => panic!("accepted an unusable bearer: {resp:?}"),
                Err(s) => {
                    status::unauthenticated(&s);
                    return None;
                }
            }
        }
        match r {
            Ok(resp) => {
                assert!(self.undecided || self.bad.is_empty(), "accepted with bad {:?}: {resp:?}", self.bad);
                Some(resp.into_inner())
            }
            Err(s) if s.code() == Code::InvalidArgument => {
                let f = status::invalid_field(&s, self.fields);
                assert!(
                    self.undecided || self.bad.contains(&f),
                    "{f} refused but oracle found bad {:?}: {s:?}",
                    self.bad
                );
                None
            }
            Err(s) => {
                status::assert_code_in(&s, self.allowed);
                assert!(self.undecided || self.bad.is_empty(), "bad {:?} but {s:?}", self.bad);
                None
            }
        }
    }
}

/// Milliseconds of a Timestamp.
pub fn ms(t: &prost_types::Timestamp) -> i64 {
    t.seconds * 1000 + i64::from(t.nanos) / 1_000_000
}
