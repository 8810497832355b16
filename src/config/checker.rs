//! The config checker: collects every error with its file:line:col while validating.

use std::time::Duration;

use toml::Spanned;

use super::ConfigError;

/// Collects errors with locations while validating.
pub(super) struct Checker<'a> {
    file: &'a str,
    text: &'a str,
    /// Where each line starts: a location is a binary search, not a count from the start.
    lines: Vec<usize>,
    pub(super) errors: Vec<ConfigError>,
}

impl<'a> Checker<'a> {
    /// A checker for `text`, named `file` in errors.
    pub(super) fn new(file: &'a str, text: &'a str) -> Self {
        let lines = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(at, _)| at.saturating_add(1)))
            .collect();
        Self {
            file,
            text,
            lines,
            errors: Vec::new(),
        }
    }

    /// `file:line:col` (1-based, columns in characters) of byte `offset`.
    pub(super) fn at(&self, offset: usize) -> String {
        let offset = offset.min(self.text.len());
        // The lines starting at or before `offset`: the last of them holds it.
        let line = self.lines.partition_point(|start| *start <= offset);
        let start = self.lines.get(line.saturating_sub(1)).copied().unwrap_or(0);
        let col = self
            .text
            .get(start..offset)
            .map_or(0, |l| l.chars().count())
            .saturating_add(1);
        format!("{}:{line}:{col}", self.file)
    }

    pub(super) fn error<T>(&mut self, spanned: &Spanned<T>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            location: self.at(spanned.span().start),
            message: message.into(),
        });
    }

    /// `value` if within `min..=max`, else an error at its location; `default` if absent.
    pub(super) fn range(
        &mut self,
        name: &str,
        value: Option<&Spanned<i64>>,
        min: u64,
        max: u64,
        default: u64,
    ) -> u64 {
        let Some(s) = value else {
            return default;
        };
        match u64::try_from(*s.get_ref()) {
            Ok(v) if (min..=max).contains(&v) => v,
            _ => {
                self.error(
                    s,
                    format!("{name} = {} is out of range {min}..={max}", s.get_ref()),
                );
                default
            }
        }
    }

    /// A duration in seconds within `min..=max` seconds.
    pub(super) fn secs(
        &mut self,
        name: &str,
        value: Option<&Spanned<i64>>,
        min: u64,
        max: u64,
        default: Duration,
    ) -> Duration {
        Duration::from_secs(self.range(name, value, min, max, default.as_secs()))
    }

    pub(super) fn parse<T, U, E: std::fmt::Display>(
        &mut self,
        s: &Spanned<T>,
        f: impl FnOnce(&T) -> Result<U, E>,
    ) -> Option<U> {
        match f(s.get_ref()) {
            Ok(v) => Some(v),
            Err(e) => {
                self.error(s, e.to_string());
                None
            }
        }
    }
}

/// Every value of a hex allow-list `v` that `f` parses; an error located at each other.
pub(super) fn list<T>(
    c: &mut Checker<'_>,
    v: &[Spanned<String>],
    f: impl Fn(&str) -> Result<T, crate::dcap::ids::BadHex>,
) -> Vec<T> {
    v.iter().filter_map(|m| c.parse(m, |s| f(s))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_location_is_the_line_and_character_column_of_the_offset() {
        let text = "a = 1\n\nb = \"é\" # x\nlast";
        let c = Checker::new("f", text);
        for (offset, want) in [
            (0, "f:1:1"),
            (4, "f:1:5"),
            (5, "f:1:6"),
            (6, "f:2:1"),
            (7, "f:3:1"),
            // After the two-byte `é`: one character.
            (14, "f:3:7"),
            (text.len(), "f:4:5"),
            (text.len() + 10, "f:4:5"),
        ] {
            assert_eq!(c.at(offset), want, "{offset}");
        }
    }
}
