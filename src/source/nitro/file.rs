//! EDGE. An offline AWS Nitro CRL: the file a directory holds under its distribution
//! point's file name, read with a bound.

use std::io::Read as _;
use std::path::Path;

use super::NitroCrlError;
use crate::nitro::collateral::CrlPoint;
use crate::nitro::limits::MAX_CRL_LEN;

/// `dir/<the point's file name>`, at most [`MAX_CRL_LEN`] bytes.
pub(super) fn read_file(dir: &Path, point: &CrlPoint) -> Result<Vec<u8>, NitroCrlError> {
    let name = point.file_name().ok_or_else(|| {
        NitroCrlError::Unavailable(format!(
            "{} names no plain file name to look up in {}",
            point.url,
            dir.display()
        ))
    })?;
    let path = dir.join(name);
    let unavailable = |e: std::io::Error| {
        NitroCrlError::Unavailable(format!("{} (for {}): {e}", path.display(), point.url))
    };
    let file = std::fs::File::open(&path).map_err(unavailable)?;
    let mut der = Vec::new();
    let limit = u64::try_from(MAX_CRL_LEN)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    file.take(limit)
        .read_to_end(&mut der)
        .map_err(unavailable)?;
    if der.len() > MAX_CRL_LEN {
        return Err(NitroCrlError::Unavailable(format!(
            "{} is larger than {MAX_CRL_LEN} bytes",
            path.display()
        )));
    }
    Ok(der)
}
