//! Configuration problems. Each is a typed variant whose message names the
//! field and the reason the rule exists; `ConfigError` adds where it was
//! found (file, line, key path) so an operator can go straight to it.

use std::fmt;
use std::path::PathBuf;

/// What is wrong with one part of a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("{0}")]
    Syntax(String),
    #[error("{0}")]
    Shape(String),
    #[error(
        "upstream `{name}` is not defined: every route must name an [[upstream]] by its `name`"
    )]
    DanglingUpstream { name: String },
    #[error(
        "duplicate {what} name `{name}` (first used on line {first_line}): names must be unique so routes and logs can refer to them"
    )]
    DuplicateName {
        what: &'static str,
        name: String,
        first_line: usize,
    },
    #[error("`{field}` must be {rule}")]
    OutOfRange { field: &'static str, rule: String },
    #[error("`{field}`: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error(
        "no [[listener]] is defined: the gateway needs at least one address to accept traffic on"
    )]
    NoListener,
    #[error(
        "only one of `path`, `path_prefix` and `path_regex` may be set: a route matches paths one way"
    )]
    ConflictingPathMatch,
    #[error("`rewrite_prefix` needs `path_prefix`: it replaces the matched prefix")]
    RewriteWithoutPrefix,
    #[error(
        "there is no `[plugin.NAME]` section: one plugin's limits go in `[plugin_limits.NAME]`, the settings of all plugins in `[plugins]`"
    )]
    RenamedPluginLimits,
}

/// One problem, with where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub key: String,
    pub problem: Problem,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.problem)
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in one file; a configuration is either fully valid or
/// rejected with all of these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
