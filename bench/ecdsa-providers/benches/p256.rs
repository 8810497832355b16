//! ECDSA P-256/SHA-256 verification of one raw `r‖s` signature over a quote-sized message
//! (432 bytes: an SGX quote's header and body) and of one DER signature over a PCK-leaf-sized
//! TBS (~1 KiB), each provider parsing the SEC1 key per call as `src/dcap/pki.rs` does.
//! The three providers run in three interleaved rounds in one process (round1/ring,
//! round1/aws_lc_rs, round1/p256, round2/...), so a loaded box weighs on all of them alike.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use p256::ecdsa::signature::Verifier as _;
use ring::rand::SystemRandom;
use ring::signature::{self as rs, EcdsaKeyPair, KeyPair as _};

struct Case {
    point: Vec<u8>,
    msg: Vec<u8>,
    fixed: Vec<u8>,
    der: Vec<u8>,
}

fn case(len: usize) -> Case {
    let rng = SystemRandom::new();
    let sign = |alg| {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("key");
        EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).expect("key")
    };
    let fixed_key = sign(&rs::ECDSA_P256_SHA256_FIXED_SIGNING);
    let msg: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let fixed = fixed_key.sign(&rng, &msg).expect("sign").as_ref().to_vec();
    // The DER signature with the same key: re-encode r‖s.
    let sig = p256::ecdsa::Signature::from_slice(&fixed).expect("r||s");
    let der = sig.to_der().as_bytes().to_vec();
    Case {
        point: fixed_key.public_key().as_ref().to_vec(),
        msg,
        fixed,
        der,
    }
}

fn ring_verify(c: &Case, der: bool) -> bool {
    let (alg, sig) = if der {
        (&rs::ECDSA_P256_SHA256_ASN1, &c.der)
    } else {
        (&rs::ECDSA_P256_SHA256_FIXED, &c.fixed)
    };
    rs::UnparsedPublicKey::new(alg, &c.point)
        .verify(&c.msg, sig)
        .is_ok()
}

fn aws_verify(c: &Case, der: bool) -> bool {
    use aws_lc_rs::signature as a;
    let (alg, sig) = if der {
        (&a::ECDSA_P256_SHA256_ASN1, &c.der)
    } else {
        (&a::ECDSA_P256_SHA256_FIXED, &c.fixed)
    };
    a::UnparsedPublicKey::new(alg, &c.point)
        .verify(&c.msg, sig)
        .is_ok()
}

fn p256_verify(c: &Case, der: bool) -> bool {
    let Ok(key) = p256::ecdsa::VerifyingKey::from_sec1_bytes(&c.point) else {
        return false;
    };
    let sig = if der {
        p256::ecdsa::Signature::from_der(&c.der)
    } else {
        p256::ecdsa::Signature::from_slice(&c.fixed)
    };
    sig.is_ok_and(|s| key.verify(&c.msg, &s).is_ok())
}

fn bench(c: &mut Criterion) {
    let quote = case(432);
    let leaf = case(1024);
    for (c_, der, _) in [(&quote, false, "quote_fixed"), (&leaf, true, "leaf_der")] {
        assert!(ring_verify(c_, der) && aws_verify(c_, der) && p256_verify(c_, der));
    }
    for round in 1..=3 {
        for (case, der, name) in [(&quote, false, "quote_fixed"), (&leaf, true, "leaf_der")] {
            let mut g = c.benchmark_group(format!("p256_verify/{name}/round{round}"));
            g.bench_function("ring", |b| {
                b.iter(|| black_box(ring_verify(black_box(case), der)))
            });
            g.bench_function("aws_lc_rs", |b| {
                b.iter(|| black_box(aws_verify(black_box(case), der)))
            });
            g.bench_function("p256", |b| {
                b.iter(|| black_box(p256_verify(black_box(case), der)))
            });
            g.finish();
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
