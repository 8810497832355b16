//! Newtypes for the values an SEV-SNP report carries, so a HOST_DATA can never be passed
//! where a MEASUREMENT is expected. All print and parse as lower-case hex (the same
//! newtype as `dcap::ids`).

use std::fmt;

use serde::{Serialize, Serializer};

use crate::dcap::ids::{hex_newtype, BadHex};

hex_newtype!(
    /// SHA-384 launch digest of the guest's initial memory and VMSAs (MEASUREMENT).
    Measurement, 48, "MEASUREMENT"
);
hex_newtype!(
    /// 32 bytes the host supplied at launch (HOST_DATA); dstack puts SHA-256(mr_config) here.
    HostData, 32, "HOST_DATA"
);
hex_newtype!(
    /// SHA-384 of the ID key that signed the launch ID block (ID_KEY_DIGEST).
    IdKeyDigest, 48, "ID_KEY_DIGEST"
);
hex_newtype!(
    /// SHA-384 of the author key that certified the ID key (AUTHOR_KEY_DIGEST).
    AuthorKeyDigest, 48, "AUTHOR_KEY_DIGEST"
);
hex_newtype!(
    /// The guest owner's family ID from the ID block (FAMILY_ID).
    FamilyId, 16, "FAMILY_ID"
);
hex_newtype!(
    /// The guest owner's image ID from the ID block (IMAGE_ID).
    ImageId, 16, "IMAGE_ID"
);
hex_newtype!(
    /// The chip's unique identifier (CHIP_ID; Turin uses the first 8 bytes, the rest zero).
    ChipId, 64, "CHIP_ID"
);
hex_newtype!(
    /// The guest's report ID, constant over its life (REPORT_ID, REPORT_ID_MA).
    ReportId, 32, "REPORT_ID"
);

impl ChipId {
    /// True when the chip ID is all zeros (the host set MaskChipId).
    pub fn is_masked(&self) -> bool {
        self.0.iter().all(|b| *b == 0)
    }
}
