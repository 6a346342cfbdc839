//! Who is on the other end of a connection: the principal and address every request of
//! that connection is authorised as.
//!
//! One `Session` per connection, created when it is accepted and updated when SASL
//! authentication (or re-authentication) completes. Handlers read it to authorise each
//! resource a request names; they never change it.

use std::net::SocketAddr;

use weft_auth::Principal;

/// The authenticated side of one connection.
#[derive(Debug, Clone)]
#[allow(dead_code)] // read once SASL and authorisation are wired (issue 8)
pub(crate) struct Session {
    /// `User:ANONYMOUS` until SASL authentication completes (or for good on a PLAINTEXT
    /// listener).
    pub(crate) principal: Principal,
    /// The client's address, matched against an ACL's host.
    pub(crate) peer: SocketAddr,
}

impl Session {
    /// An unauthenticated connection from `peer`.
    pub(crate) fn anonymous(peer: SocketAddr) -> Session {
        Session {
            principal: Principal::Anonymous,
            peer,
        }
    }
}
