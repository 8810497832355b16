//! A tiny DER writer for the PCK certificate's SGX extension (test PKI only).

/// A TLV with a definite length.
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(u8::try_from(len).unwrap_or(0));
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | u8::try_from(bytes.len()).unwrap_or(0));
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(content);
    out
}

/// SEQUENCE of the given encoded items.
pub(crate) fn seq(items: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x30, &items.concat())
}

/// OBJECT IDENTIFIER from arcs (first arc 0..=2).
pub(crate) fn oid(arcs: &[u64]) -> Vec<u8> {
    let mut body = Vec::new();
    let first = arcs.first().copied().unwrap_or(0) * 40 + arcs.get(1).copied().unwrap_or(0);
    for arc in std::iter::once(first).chain(arcs.iter().skip(2).copied()) {
        let mut chunk = vec![u8::try_from(arc & 0x7f).unwrap_or(0)];
        let mut rest = arc >> 7;
        while rest > 0 {
            chunk.push(0x80 | u8::try_from(rest & 0x7f).unwrap_or(0));
            rest >>= 7;
        }
        chunk.reverse();
        body.extend(chunk);
    }
    tlv(0x06, &body)
}

/// INTEGER for a non-negative value.
pub(crate) fn uint(v: u64) -> Vec<u8> {
    let mut bytes: Vec<u8> = v
        .to_be_bytes()
        .into_iter()
        .skip_while(|b| *b == 0)
        .collect();
    if bytes.first().is_none_or(|b| b & 0x80 != 0) {
        bytes.insert(0, 0);
    }
    tlv(0x02, &bytes)
}

/// OCTET STRING.
pub(crate) fn octets(b: &[u8]) -> Vec<u8> {
    tlv(0x04, b)
}

/// ENUMERATED.
pub(crate) fn enumerated(v: u8) -> Vec<u8> {
    tlv(0x0a, &[v])
}
