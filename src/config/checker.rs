//! The config checker: collects every error with its file:line:col while validating.

use std::time::Duration;

use toml::Spanned;

use super::ConfigError;

/// Collects errors with locations while validating.
pub(super) struct Checker<'a> {
    file: &'a str,
    text: &'a str,
    pub(super) errors: Vec<ConfigError>,
}

impl<'a> Checker<'a> {
    /// A checker for `text`, named `file` in errors.
    pub(super) fn new(file: &'a str, text: &'a str) -> Self {
        Self {
            file,
            text,
            errors: Vec::new(),
        }
    }

    pub(super) fn at(&self, offset: usize) -> String {
        let before = self.text.get(..offset).unwrap_or(self.text);
        let line = before.matches('\n').count().saturating_add(1);
        let col = before
            .rsplit('\n')
            .next()
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
