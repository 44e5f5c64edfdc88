//! The principal of a TLS client certificate: its subject as Kafka's
//! default principal builder names it (`User:` + the distinguished name in
//! RFC 2253 form, e.g. `User:CN=alice,OU=eng,O=example`).
//!
//! A small DER reader over the certificate's fields up to the subject;
//! every length is checked, so a hostile certificate gets an error, never
//! a panic.

/// A DER element: (tag, contents, rest).
fn element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |a, &b| (a << 8) | b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;

/// The short names Kafka's (Java's) RFC 2253 form uses; other attributes
/// are written as their dotted OID with the value in hex, as Java does.
fn attribute_name(oid: &[u8]) -> Option<&'static str> {
    Some(match oid {
        [0x55, 0x04, 0x03] => "CN",
        [0x55, 0x04, 0x06] => "C",
        [0x55, 0x04, 0x07] => "L",
        [0x55, 0x04, 0x08] => "ST",
        [0x55, 0x04, 0x09] => "STREET",
        [0x55, 0x04, 0x0a] => "O",
        [0x55, 0x04, 0x0b] => "OU",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => "DC",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => "UID",
        _ => return None,
    })
}

fn dotted(oid: &[u8]) -> String {
    let mut parts = Vec::new();
    if let Some((&first, rest)) = oid.split_first() {
        parts.push((first / 40) as u64);
        parts.push((first % 40) as u64);
        let mut v = 0u64;
        for &b in rest {
            v = (v << 7) | (b & 0x7f) as u64;
            if b & 0x80 == 0 {
                parts.push(v);
                v = 0;
            }
        }
    }
    parts
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

/// RFC 2253 escaping of an attribute value.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == value.chars().count() - 1 && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The subject of a DER certificate in RFC 2253 form (most significant
/// RDN last in the encoding, first in the string), or None if the
/// certificate cannot be read.
pub fn subject_dn(cert_der: &[u8]) -> Option<String> {
    let (tag, cert, _) = element(cert_der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, tbs, _) = element(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut rest = tbs;
    // [0] version, optional.
    let (tag, _, r) = element(rest)?;
    if tag == 0xa0 {
        rest = r;
    }
    // serialNumber, signature, issuer, validity, subject.
    for _ in 0..4 {
        let (_, _, r) = element(rest)?;
        rest = r;
    }
    let (tag, subject, _) = element(rest)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut rdns = Vec::new();
    let mut rest = subject;
    while !rest.is_empty() {
        let (tag, set, r) = element(rest)?;
        rest = r;
        if tag != SET {
            return None;
        }
        let mut atvs = Vec::new();
        let mut inner = set;
        while !inner.is_empty() {
            let (tag, atv, r) = element(inner)?;
            inner = r;
            if tag != SEQUENCE {
                return None;
            }
            let (tag, oid, r) = element(atv)?;
            if tag != OID {
                return None;
            }
            let (vtag, value, _) = element(r)?;
            atvs.push(match attribute_name(oid) {
                // UTF8String, PrintableString, IA5String, T61String.
                Some(name) if matches!(vtag, 0x0c | 0x13 | 0x16 | 0x14) => {
                    format!("{name}={}", escape(&String::from_utf8_lossy(value)))
                }
                _ => {
                    let mut hex = String::with_capacity(2 * r.len());
                    for b in &r[..r.len() - element(r)?.2.len()] {
                        hex.push_str(&format!("{b:02x}"));
                    }
                    format!(
                        "{}=#{hex}",
                        attribute_name(oid).map_or_else(|| dotted(oid), str::to_string)
                    )
                }
            });
        }
        rdns.push(atvs.join("+"));
    }
    rdns.reverse();
    Some(rdns.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate's DER with the given subject RDNs (each a list of
    /// (OID bytes, value)), other fields minimal.
    fn cert(rdns: &[&[(&[u8], &str)]]) -> Vec<u8> {
        fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
            let mut v = vec![tag];
            if body.len() < 0x80 {
                v.push(body.len() as u8);
            } else {
                v.push(0x82);
                v.extend_from_slice(&(body.len() as u16).to_be_bytes());
            }
            v.extend_from_slice(body);
            v
        }
        let mut subject = Vec::new();
        for rdn in rdns {
            let mut set = Vec::new();
            for (oid, value) in *rdn {
                let mut atv = tlv(OID, oid);
                atv.extend(tlv(0x0c, value.as_bytes()));
                set.extend(tlv(SEQUENCE, &atv));
            }
            subject.extend(tlv(SET, &set));
        }
        let mut tbs = tlv(0xa0, &tlv(0x02, &[2]));
        tbs.extend(tlv(0x02, &[1]));
        tbs.extend(tlv(SEQUENCE, &[]));
        tbs.extend(tlv(SEQUENCE, &[]));
        tbs.extend(tlv(SEQUENCE, &[]));
        tbs.extend(tlv(SEQUENCE, &subject));
        let mut c = tlv(SEQUENCE, &tbs);
        c.extend(tlv(SEQUENCE, &[]));
        tlv(SEQUENCE, &c)
    }

    #[test]
    fn subjects_read_as_kafka_names_them() {
        let c = cert(&[
            &[(&[0x55, 0x04, 0x06], "US")],
            &[(&[0x55, 0x04, 0x0a], "Example, Inc.")],
            &[(&[0x55, 0x04, 0x03], "alice")],
        ]);
        assert_eq!(subject_dn(&c).unwrap(), "CN=alice,O=Example\\, Inc.,C=US");
        let multi = cert(&[&[(&[0x55, 0x04, 0x03], "a"), (&[0x55, 0x04, 0x0b], "b")]]);
        assert_eq!(subject_dn(&multi).unwrap(), "CN=a+OU=b");
        let other = cert(&[&[(&[0x2a, 0x86, 0x48], "x")]]);
        assert_eq!(subject_dn(&other).unwrap(), "1.2.840=#0c0178");
    }

    #[test]
    fn truncated_and_garbage_certificates_give_none() {
        let c = cert(&[&[(&[0x55, 0x04, 0x03], "alice")]]);
        for n in 0..c.len() {
            let _ = subject_dn(&c[..n]);
        }
        assert_eq!(subject_dn(&[]), None);
        assert_eq!(subject_dn(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = subject_dn(&data);
        }
    }
}
