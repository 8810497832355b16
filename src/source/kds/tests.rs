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
