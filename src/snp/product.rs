//! The EPYC product lines that sign SEV-SNP reports (Milan, Genoa, Turin), how a report
//! or a VCEK names them, and the TCB_VERSION layout each uses: Milan and Genoa put the
//! SPLs at bytes 0, 1, 6, 7; Turin adds the FMC and moves them to 0, 1, 2, 3, 7 (SEV-SNP
//! Firmware ABI, "TCB_VERSION Structure").

use std::fmt;

/// An AMD EPYC product line with its own root key (ARK). Bergamo and Siena are Genoa.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Product {
    /// EPYC 7003 (Zen 3, family 19h models 00h–0Fh).
    Milan,
    /// EPYC 9004/8004 (Zen 4, family 19h models 10h–1Fh and A0h–AFh).
    Genoa,
    /// EPYC 9005 (Zen 5, family 1Ah models 00h–1Fh).
    Turin,
}

impl Product {
    /// Every product, for iteration.
    pub const ALL: [Product; 3] = [Self::Milan, Self::Genoa, Self::Turin];

    /// The name AMD's KDS and certificates use (`Milan`, `Genoa`, `Turin`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Milan => "Milan",
            Self::Genoa => "Genoa",
            Self::Turin => "Turin",
        }
    }

    /// The product a report's CPUID family and model (report version 3 and later) name.
    pub fn from_cpuid(family: u8, model: u8) -> Option<Self> {
        match (family, model) {
            (0x19, 0x00..=0x0f) => Some(Self::Milan),
            (0x19, 0x10..=0x1f | 0xa0..=0xaf) => Some(Self::Genoa),
            (0x1a, 0x00..=0x1f) => Some(Self::Turin),
            _ => None,
        }
    }

    /// The product a VCEK/VLEK `productName` extension names: `Milan-B0`, `Genoa`, `Turin`
    /// (the stepping after `-` is informational: AMD has issued it inconsistently).
    pub fn from_product_name(name: &str) -> Option<Self> {
        let line = name.split_once('-').map_or(name, |(line, _)| line);
        Self::ALL.into_iter().find(|p| p.name() == line)
    }

    /// How this product lays out a TCB_VERSION.
    pub fn tcb_layout(self) -> TcbLayout {
        match self {
            Self::Milan | Self::Genoa => TcbLayout::Legacy,
            Self::Turin => TcbLayout::Turin,
        }
    }
}

impl fmt::Display for Product {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The two TCB_VERSION layouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcbLayout {
    /// Milan, Genoa: `[bootloader, tee, 0, 0, 0, 0, snp, microcode]`.
    Legacy,
    /// Turin: `[fmc, bootloader, tee, snp, 0, 0, 0, microcode]`.
    Turin,
}

/// A TCB_VERSION as the report carries it (8 bytes, little-endian u64).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TcbVersion(pub [u8; 8]);

impl fmt::Debug for TcbVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TcbVersion({})", hex::encode(self.0))
    }
}

/// A TCB_VERSION's security patch levels (SPLs), decoded for a product.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Tcb {
    /// FMC firmware SPL (Turin and later only).
    pub fmc: Option<u8>,
    /// PSP bootloader SPL.
    pub bootloader: u8,
    /// PSP OS (TEE) SPL.
    pub tee: u8,
    /// SNP firmware SPL.
    pub snp: u8,
    /// Lowest microcode patch level of all cores.
    pub microcode: u8,
}

impl fmt::Display for Tcb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(fmc) = self.fmc {
            write!(f, "fmc={fmc} ")?;
        }
        write!(
            f,
            "bootloader={} tee={} snp={} microcode={}",
            self.bootloader, self.tee, self.snp, self.microcode
        )
    }
}

impl TcbVersion {
    /// Decodes the SPLs; `None` when a reserved byte is not zero: a layout we do not know
    /// (or a Turin TCB read as Milan's), refused by the caller.
    pub fn decode(self, layout: TcbLayout) -> Option<Tcb> {
        let b = self.0;
        let (reserved, tcb) = match layout {
            TcbLayout::Legacy => {
                let [bootloader, tee, r0, r1, r2, r3, snp, microcode] = b;
                let tcb = Tcb {
                    fmc: None,
                    bootloader,
                    tee,
                    snp,
                    microcode,
                };
                ([r0, r1, r2, r3], tcb)
            }
            TcbLayout::Turin => {
                let [fmc, bootloader, tee, snp, r0, r1, r2, microcode] = b;
                let tcb = Tcb {
                    fmc: Some(fmc),
                    bootloader,
                    tee,
                    snp,
                    microcode,
                };
                ([r0, r1, r2, 0], tcb)
            }
        };
        reserved.iter().all(|r| *r == 0).then_some(tcb)
    }

    /// Encodes SPLs in a layout (the inverse of [`TcbVersion::decode`]).
    pub fn encode(tcb: &Tcb, layout: TcbLayout) -> Self {
        match layout {
            TcbLayout::Legacy => {
                Self([tcb.bootloader, tcb.tee, 0, 0, 0, 0, tcb.snp, tcb.microcode])
            }
            TcbLayout::Turin => Self([
                tcb.fmc.unwrap_or(0),
                tcb.bootloader,
                tcb.tee,
                tcb.snp,
                0,
                0,
                0,
                tcb.microcode,
            ]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuid_names_the_product_lines_and_refuses_others() {
        assert_eq!(Product::from_cpuid(0x19, 0x01), Some(Product::Milan));
        assert_eq!(Product::from_cpuid(0x19, 0x11), Some(Product::Genoa));
        assert_eq!(Product::from_cpuid(0x19, 0xa0), Some(Product::Genoa));
        assert_eq!(Product::from_cpuid(0x1a, 0x02), Some(Product::Turin));
        for (f, m) in [(0x17, 0x31), (0x19, 0x21), (0x1a, 0x50), (0, 0)] {
            assert!(Product::from_cpuid(f, m).is_none(), "{f:#x} {m:#x}");
        }
    }

    #[test]
    fn product_names_with_and_without_stepping() {
        assert_eq!(Product::from_product_name("Milan-B0"), Some(Product::Milan));
        assert_eq!(Product::from_product_name("Genoa"), Some(Product::Genoa));
        assert_eq!(Product::from_product_name("Turin"), Some(Product::Turin));
        assert_eq!(Product::from_product_name("milan"), None);
        assert_eq!(Product::from_product_name("Venice-A0"), None);
        assert_eq!(Product::from_product_name(""), None);
    }

    #[test]
    fn tcb_layouts_round_trip_and_a_turin_tcb_is_not_read_as_milan() {
        let turin = Tcb {
            fmc: Some(1),
            bootloader: 1,
            tee: 1,
            snp: 4,
            microcode: 0x51,
        };
        let raw = TcbVersion::encode(&turin, TcbLayout::Turin);
        assert_eq!(raw.0, [1, 1, 1, 4, 0, 0, 0, 0x51]);
        assert_eq!(raw.decode(TcbLayout::Turin), Some(turin));
        assert!(raw.decode(TcbLayout::Legacy).is_none());
        let milan = TcbVersion([4, 0, 0, 0, 0, 0, 0x17, 0xd5]);
        let tcb = milan.decode(TcbLayout::Legacy);
        assert_eq!(
            tcb.map(|t| (t.bootloader, t.snp, t.microcode)),
            Some((4, 0x17, 0xd5))
        );
        assert!(TcbVersion([4, 0, 1, 0, 0, 0, 0x17, 0xd5])
            .decode(TcbLayout::Legacy)
            .is_none());
    }
}
