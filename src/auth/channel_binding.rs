//! SCRAM channel binding data of type `tls-server-end-point` (RFC 5929 §4.1): a hash of
//! the TLS server's certificate, so a SCRAM exchange proves that both ends see the same
//! TLS server and no man in the middle re-terminated the connection.
//!
//! The hash function is the one of the certificate's own signature algorithm, except that
//! MD5 and SHA-1 are replaced by SHA-256 — exactly what Postgres and libpq compute. For a
//! signature algorithm with no single hash (RSASSA-PSS, Ed25519) there is no defined value
//! and Postgres refuses channel binding; so does this module (`None`), and the callers then
//! neither offer nor use `SCRAM-SHA-256-PLUS`.
//!
//! Only the outer `Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, ... }`
//! is walked (a few DER headers), so no X.509 parser is needed.

use sha2::{Digest, Sha256, Sha384, Sha512};

/// The channel binding type name, as it appears in the gs2 header (`p=tls-server-end-point`).
pub const TLS_SERVER_END_POINT: &str = "tls-server-end-point";

/// The hashes RFC 5929 can call for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

/// Signature algorithm OIDs (DER content bytes) and the hash RFC 5929 maps each to.
const ALGORITHMS: &[(&[u8], Hash)] = &[
    // md5WithRSAEncryption 1.2.840.113549.1.1.4 and sha1WithRSAEncryption ...1.5 → SHA-256.
    (&[42, 134, 72, 134, 247, 13, 1, 1, 4], Hash::Sha256),
    (&[42, 134, 72, 134, 247, 13, 1, 1, 5], Hash::Sha256),
    // sha256/384/512WithRSAEncryption 1.2.840.113549.1.1.11 / .12 / .13.
    (&[42, 134, 72, 134, 247, 13, 1, 1, 11], Hash::Sha256),
    (&[42, 134, 72, 134, 247, 13, 1, 1, 12], Hash::Sha384),
    (&[42, 134, 72, 134, 247, 13, 1, 1, 13], Hash::Sha512),
    // ecdsa-with-SHA1 1.2.840.10045.4.1 → SHA-256; ecdsa-with-SHA256/384/512 ...4.3.2/3/4.
    (&[42, 134, 72, 206, 61, 4, 1], Hash::Sha256),
    (&[42, 134, 72, 206, 61, 4, 3, 2], Hash::Sha256),
    (&[42, 134, 72, 206, 61, 4, 3, 3], Hash::Sha384),
    (&[42, 134, 72, 206, 61, 4, 3, 4], Hash::Sha512),
];

/// The `tls-server-end-point` binding data of a DER certificate, or `None` when the
/// certificate cannot be read or its signature algorithm defines no hash.
pub fn tls_server_end_point(cert_der: &[u8]) -> Option<Vec<u8>> {
    let hash = signature_hash(cert_der)?;
    Some(match hash {
        Hash::Sha256 => Sha256::digest(cert_der).to_vec(),
        Hash::Sha384 => Sha384::digest(cert_der).to_vec(),
        Hash::Sha512 => Sha512::digest(cert_der).to_vec(),
    })
}

/// Finds the outer `signatureAlgorithm` OID and maps it to a hash.
fn signature_hash(der: &[u8]) -> Option<Hash> {
    const SEQUENCE: u8 = 0x30;
    const OID: u8 = 0x06;
    let (cert, _) = tlv(der, SEQUENCE)?;
    let (_tbs, rest) = tlv(cert, SEQUENCE)?;
    let (algorithm, _) = tlv(rest, SEQUENCE)?;
    let (oid, _) = tlv(algorithm, OID)?;
    ALGORITHMS
        .iter()
        .find(|(known, _)| *known == oid)
        .map(|(_, hash)| *hash)
}

/// Splits one DER element with tag `tag` off the front of `input`: (its content, the rest).
fn tlv(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&first, rest) = input.split_first()?;
    if first != tag {
        return None;
    }
    let (&len_byte, rest) = rest.split_first()?;
    let (len, rest) = if len_byte < 0x80 {
        (usize::from(len_byte), rest)
    } else {
        let count = usize::from(len_byte & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let len = rest[..count]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[count..])
    };
    if rest.len() < len {
        return None;
    }
    Some(rest.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_with(alg: &'static rcgen::SignatureAlgorithm) -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let params = rcgen::CertificateParams::new(vec!["db.example".to_owned()]).unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn hash_follows_the_signature_algorithm() {
        let p256 = cert_with(&rcgen::PKCS_ECDSA_P256_SHA256);
        assert_eq!(
            tls_server_end_point(&p256),
            Some(Sha256::digest(&p256).to_vec())
        );
        let p384 = cert_with(&rcgen::PKCS_ECDSA_P384_SHA384);
        let bound = tls_server_end_point(&p384).unwrap();
        assert_eq!(bound.len(), 48);
        assert_eq!(bound, Sha384::digest(&p384).to_vec());
    }

    #[test]
    fn no_hash_for_ed25519_or_garbage() {
        let ed = cert_with(&rcgen::PKCS_ED25519);
        assert_eq!(tls_server_end_point(&ed), None);
        assert_eq!(tls_server_end_point(b""), None);
        assert_eq!(
            tls_server_end_point(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]),
            None
        );
        let p256 = cert_with(&rcgen::PKCS_ECDSA_P256_SHA256);
        assert_eq!(tls_server_end_point(&p256[..p256.len() / 2]), None);
    }

    #[test]
    fn long_form_lengths() {
        assert_eq!(
            tlv(&[0x04, 0x81, 0x02, 7, 8, 9], 0x04),
            Some((&[7u8, 8][..], &[9u8][..]))
        );
        assert_eq!(tlv(&[0x04, 0x82, 0x00], 0x04), None);
        assert_eq!(tlv(&[0x05, 0x00], 0x04), None);
    }
}
