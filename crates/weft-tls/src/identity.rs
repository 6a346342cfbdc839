//! The verified client certificate's subject, as a principal.

use rustls::pki_types::CertificateDer;
use weft_auth::Principal;
use x509_cert::Certificate;
use x509_cert::der::asn1::{Ia5StringRef, PrintableStringRef, TeletexStringRef, Utf8StringRef};
use x509_cert::der::oid::ObjectIdentifier;
use x509_cert::der::{Decode as _, Tag, Tagged as _};

/// id-at-commonName (RFC 4519).
const COMMON_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");

/// Who the client certificate says the peer is. Only ever built from a certificate the
/// handshake verified against `client_ca_file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The subject as an RFC 4514 string (`CN=alice,O=Example`).
    pub subject: String,
    /// The subject's (last) common name, when it has one.
    pub common_name: Option<String>,
    /// The leaf certificate, DER.
    pub certificate: CertificateDer<'static>,
}

impl PeerIdentity {
    /// `None` when the DER does not parse as an X.509 certificate (rustls verified it, so
    /// that does not happen in practice).
    pub fn from_der(certificate: CertificateDer<'static>) -> Option<PeerIdentity> {
        let cert = Certificate::from_der(certificate.as_ref()).ok()?;
        let subject = &cert.tbs_certificate.subject;
        let common_name = subject
            .0
            .iter()
            .flat_map(|rdn| rdn.0.iter())
            .filter(|atv| atv.oid == COMMON_NAME)
            .filter_map(|atv| directory_string(&atv.value))
            .next_back();
        Some(PeerIdentity {
            subject: subject.to_string(),
            common_name,
            certificate,
        })
    }

    /// The principal the connection acts as: `User:<CN>`, or `User:<subject>` (Kafka's
    /// default `ssl.principal.mapping.rules` form) when there is no CN.
    pub fn principal(&self) -> Principal {
        Principal::user(self.common_name.as_deref().unwrap_or(&self.subject))
    }
}

/// A DirectoryString's text (the string types RFC 5280 allows for names).
fn directory_string(value: &x509_cert::der::Any) -> Option<String> {
    let s = match value.tag() {
        Tag::Utf8String => Utf8StringRef::try_from(value).ok()?.as_str().to_owned(),
        Tag::PrintableString => PrintableStringRef::try_from(value)
            .ok()?
            .as_str()
            .to_owned(),
        Tag::Ia5String => Ia5StringRef::try_from(value).ok()?.as_str().to_owned(),
        Tag::TeletexString => TeletexStringRef::try_from(value).ok()?.as_str().to_owned(),
        _ => return None,
    };
    Some(s)
}
