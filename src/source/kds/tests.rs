//! The KDS URL forms, and the SEV-SNP CRL mark across a restart.

use super::endpoint::verify_chain;
use super::*;
use crate::snp::ids::ChipId;

#[test]
fn kds_urls_follow_the_spec_for_each_product() {
    let kds = KdsEndpoint::at("https://kds.example/", None).expect("endpoint");
    let mut chip = [0u8; 64];
    chip[0] = 0xab;
    chip[63] = 0xcd;
    let tcb = Tcb {
        fmc: None,
        bootloader: 4,
        tee: 0,
        snp: 23,
        microcode: 213,
    };
    let milan = kds.vcek_url(Product::Milan, &ChipId(chip), &tcb);
    assert_eq!(
        milan,
        format!(
            "https://kds.example/vcek/v1/Milan/ab{}cd?blSPL=04&teeSPL=00&snpSPL=23&ucodeSPL=213",
            "00".repeat(62)
        )
    );
    let turin = Tcb {
        fmc: Some(1),
        ..tcb
    };
    assert_eq!(
        kds.vcek_url(Product::Turin, &ChipId(chip), &turin),
        "https://kds.example/vcek/v1/Turin/ab00000000000000?fmcSPL=01&blSPL=04&teeSPL=00&snpSPL=23&ucodeSPL=213"
    );
    assert_eq!(
        kds.cert_chain_url(Product::Genoa, SigningKey::Vlek),
        "https://kds.example/vlek/v1/Genoa/cert_chain"
    );
    assert_eq!(
        kds.crl_url(Product::Milan, SigningKey::Vcek),
        "https://kds.example/vcek/v1/Milan/crl"
    );
}

#[cfg(feature = "sim")]
mod marks_tests {
    use super::*;
    use crate::sim::snp::SimSnpPki;
    use crate::source::marks::Book;

    /// The CRL rule outlives the cache: after a restart (marks read back from the state
    /// directory) an older product CRL is still refused.
    #[test]
    fn an_older_product_crl_is_refused_after_a_restart_too() {
        let now = UnixTime(1_790_000_000);
        let pki = SimSnpPki::new(Product::Milan, now).expect("pki");
        let trust = SimSnpPki::trust(&[&pki]).expect("trust");
        let chain_at = |from: i64| {
            let crl = pki
                .crl(UnixTime(from), UnixTime(from + 30 * 86_400), &[])
                .expect("crl");
            verify_chain(
                Product::Milan,
                SigningKey::Vcek,
                pki.cert_chain_pem(SigningKey::Vcek).as_bytes(),
                &crl,
                &trust,
            )
            .expect("chain")
        };
        let (newer, older) = (chain_at(now.0 - 60), chain_at(now.0 - 7 * 86_400));
        let dir = std::env::temp_dir().join(format!("ratls-kds-marks-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let marks = Marks::load(&dir, Book::Standard).expect("no file yet");
        admit_crl(&marks, &trust, &newer).expect("first");
        admit_crl(&marks, &trust, &newer).expect("the same again");
        let restarted = Marks::load(&dir, Book::Standard).expect("reads its file");
        let refused = admit_crl(&restarted, &trust, &older);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(matches!(refused, Err(KdsError::Rollback(_))), "{refused:?}");
        assert_eq!(
            refused.map_err(|e| e.code()).err(),
            Some("collateral_rollback")
        );
    }
}

#[cfg(feature = "sim")]
mod held_tests {
    use super::held::{store, HeldVek, MAX_VCEKS, MAX_VCEKS_PER_CHIP};
    use super::*;
    use crate::sim::snp::{sim_chip_id, sim_tcb, SimSnpPki, VekSpec};

    /// A full cache makes room (the expired first, else the oldest) and a chip never holds
    /// more than its share: nobody is locked out, whoever filled it.
    #[test]
    fn a_full_cache_drops_the_expired_then_the_oldest_and_a_chip_keeps_its_share() {
        let now = UnixTime(1_790_000_000);
        let p = Product::Milan;
        let pki = SimSnpPki::new(p, now).expect("pki");
        let trust = SimSnpPki::trust(&[&pki]).expect("trust");
        let crl = pki
            .crl(UnixTime(now.0 - 60), UnixTime(now.0 + 86_400), &[])
            .expect("crl");
        let chain = verify_chain(
            p,
            SigningKey::Vcek,
            pki.cert_chain_pem(SigningKey::Vcek).as_bytes(),
            &crl,
            &trust,
        )
        .expect("chain");
        let sim = pki
            .vek(&VekSpec::vcek(sim_chip_id(p), sim_tcb(p)))
            .expect("vek");
        let vek = Arc::new(VerifiedVek::verify(&sim.der, Arc::new(chain)).expect("verifies"));
        let held = |stored: u64| HeldVek {
            der: Vec::new(),
            vek: Arc::clone(&vek),
            stored,
        };
        let chip = |i: u64| {
            let mut c = [0u8; 64];
            c[..8].copy_from_slice(&(i + 1).to_be_bytes());
            c
        };
        let max = u64::try_from(MAX_VCEKS).expect("fits");
        let tcb = sim_tcb(p);
        let mut veks = HashMap::new();
        for i in 0..max {
            store(&mut veks, (p, chip(i), tcb), held(i), now);
        }
        assert_eq!(veks.len(), MAX_VCEKS);
        // Full, nothing expired: the oldest goes.
        store(&mut veks, (p, chip(max), tcb), held(5000), now);
        assert_eq!(veks.len(), MAX_VCEKS);
        assert!(!veks.contains_key(&(p, chip(0), tcb)));
        assert!(veks.contains_key(&(p, chip(1), tcb)));
        // Full, every key expired by then: all of them go.
        let later = UnixTime(vek.valid_until().0 + 1);
        store(&mut veks, (p, chip(max + 1), tcb), held(5001), later);
        assert_eq!(veks.len(), 1);
        // One chip at many TCBs keeps its newest share only.
        for snp in 0..40u8 {
            let t = Tcb { snp, ..tcb };
            store(&mut veks, (p, chip(7), t), held(6000 + u64::from(snp)), now);
        }
        let mine: Vec<u8> = veks
            .keys()
            .filter(|k| k.1 == chip(7))
            .map(|k| k.2.snp)
            .collect();
        assert_eq!(mine.len(), MAX_VCEKS_PER_CHIP);
        assert!(mine.iter().all(|s| *s >= 40 - 8), "{mine:?}");
    }
}
