//! Detection rules and silences: versioned YAML files under `rules/`.
//!
//! A rule set is built from plain files, read by the caller (this crate does no I/O) and
//! passed in as [`RuleFile`]s. Files are taken in byte order of their paths and rules in the
//! order they are written in each file; that is the evaluation order, and the first rule
//! that holds wins. Every file is parsed strictly (unknown keys, duplicate keys, wrong types
//! are refused) and validated after parsing (ids, semantic versions, severities, patterns,
//! silence windows, limits). Anything wrong refuses the whole set with a [`RuleError`] that
//! names the file and the line: a half-loaded rule set would detect some outages and
//! silently miss others.
//!
//! The set's content hash ([`RuleSet::hash`]) covers the exact bytes of every file, so any
//! edit, even to a comment, yields a new hash, and every detection records the hash of the
//! set that produced it. `rules/README.md` documents the file format for the people who
//! write the files.
//!
//! YAML is parsed with `serde-saphyr`: pure Rust, no `unsafe`, documented not to panic on
//! any input, with a parse budget against alias bombs, and errors that carry line and
//! column.

use crate::glob::glob_match;
use crate::hash::{Digest, FieldHasher};
use crate::signal::{Severity, Signal, SourceKind, LABEL_COUNT_MAX, LABEL_LEN_MAX};
use crate::time::EpochMs;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::collections::BTreeMap;
use std::fmt;

/// Most files one rule set may be built from.
pub const RULE_FILES_PER_SET_MAX: usize = 256;
/// Largest rule file accepted, in bytes.
pub const RULE_FILE_LEN_MAX: usize = 1024 * 1024;
/// Longest rule file path accepted, in bytes.
pub const RULE_PATH_LEN_MAX: usize = 1024;
/// Most rules in one rule set, across all its files.
pub const RULES_PER_SET_MAX: usize = 1000;
/// Most silences in one rule set, across all its files.
pub const SILENCES_PER_SET_MAX: usize = 1000;
/// Longest rule or silence id, in bytes.
pub const ID_LEN_MAX: usize = 128;
/// Longest rule description, in bytes.
pub const DESCRIPTION_LEN_MAX: usize = 1024;
/// Longest `created_by` of a silence, in bytes.
pub const CREATED_BY_LEN_MAX: usize = 256;
/// Longest `comment` of a silence, in bytes.
pub const COMMENT_LEN_MAX: usize = 1024;
/// Longest glob pattern, in bytes (as long as the longest label value a signal keeps).
pub const PATTERN_LEN_MAX: usize = LABEL_LEN_MAX;
/// Most patterns in one matcher's list.
pub const PATTERNS_PER_MATCHER_MAX: usize = 64;
/// Most label matchers in one `match`, `exclude` or silence `matchers` block.
pub const LABEL_MATCHERS_MAX: usize = LABEL_COUNT_MAX;
/// Longest silence, in milliseconds (30 days): a forgotten silence must run out on its own
/// rather than hide a service's outages indefinitely.
pub const SILENCE_DURATION_MAX_MS: i64 = 30 * 24 * 60 * 60 * 1000;
/// The domain tag of [`RuleSet::hash`].
pub const RULESET_HASH_TAG: &str = "opx.ruleset.v1";
/// The path a [`RuleError`] names when the problem is the set as a whole, not one file.
pub const RULESET_ERROR_PATH: &str = "(rule set)";

/// The five source kinds, for checking that a `source` pattern can match at least one.
const SOURCE_KINDS: [SourceKind; 5] = [
    SourceKind::CloudwatchEventbridge,
    SourceKind::CloudwatchAlarmAction,
    SourceKind::CloudwatchSns,
    SourceKind::Alertmanager,
    SourceKind::Native,
];

/// The default rule files shipped in the repository's `rules/` directory, compiled in so
/// that a binary can run from any directory.
const DEFAULT_RULE_FILES: [(&str, &str); 4] = [
    (
        "rules/alertmanager.yaml",
        include_str!("../../../rules/alertmanager.yaml"),
    ),
    (
        "rules/cloudwatch.yaml",
        include_str!("../../../rules/cloudwatch.yaml"),
    ),
    (
        "rules/native.yaml",
        include_str!("../../../rules/native.yaml"),
    ),
    (
        "rules/silences.yaml",
        include_str!("../../../rules/silences.yaml"),
    ),
];

/// One rule file as read by the caller: its path (as it should appear in errors and in the
/// hash, e.g. `rules/cloudwatch.yaml`) and its full text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleFile {
    /// The file's path, relative to the repository or rules directory.
    pub path: String,
    /// The file's exact text.
    pub text: String,
}

/// Why a rule set was refused: the file, the line when known, and what to fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct RuleError {
    /// The file at fault, or [`RULESET_ERROR_PATH`] for a problem of the whole set.
    pub path: String,
    /// The 1-based line at fault, when known.
    pub line: Option<u64>,
    /// What is wrong and what to do about it.
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.path, line, self.message),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

/// One or more glob patterns (`*` any run, `?` one character); a value matches when it
/// matches any of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Patterns(Vec<String>);

impl Patterns {
    /// The patterns, as written.
    pub fn patterns(&self) -> &[String] {
        &self.0
    }

    /// Whether `text` matches at least one pattern.
    pub fn matches(&self, text: &str) -> bool {
        self.0.iter().any(|pattern| glob_match(pattern, text))
    }
}

/// A block of matchers. Every matcher that is given must hold; a list of patterns holds
/// when any of them matches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Matchers {
    /// Patterns over the source kind (`cloudwatch_eventbridge`, `alertmanager`, ...).
    pub source: Option<Patterns>,
    /// Patterns over the alarm identity (CloudWatch alarm ARN, `alertmanager:<fingerprint>`).
    pub alarm: Option<Patterns>,
    /// Patterns over the alarm name (CloudWatch alarm name, Alertmanager `alertname`).
    pub alarm_name: Option<Patterns>,
    /// Patterns over the environment (AWS account id, Alertmanager environment label).
    pub environment: Option<Patterns>,
    /// Patterns over the service.
    pub service: Option<Patterns>,
    /// Patterns over label values, by label name; the label must be present.
    pub labels: BTreeMap<String, Patterns>,
}

impl Matchers {
    /// Whether no matcher is given (such a block would match every signal).
    pub fn is_empty(&self) -> bool {
        self.source.is_none()
            && self.alarm.is_none()
            && self.alarm_name.is_none()
            && self.environment.is_none()
            && self.service.is_none()
            && self.labels.is_empty()
    }

    /// Whether every given matcher holds for `signal`.
    pub fn matches(&self, signal: &Signal) -> bool {
        let holds = |patterns: &Option<Patterns>, text: &str| {
            patterns
                .as_ref()
                .is_none_or(|patterns| patterns.matches(text))
        };
        holds(&self.source, signal.source.as_str())
            && holds(&self.alarm, &signal.alarm)
            && holds(&self.alarm_name, &signal.alarm_name)
            && holds(&self.environment, &signal.environment)
            && holds(&self.service, &signal.service)
            && self.labels.iter().all(|(name, patterns)| {
                signal
                    .labels
                    .get(name)
                    .is_some_and(|value| patterns.matches(value))
            })
    }
}

/// Conditions on the signal beyond its identity fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Conditions {
    /// The signal's severity must be this bad or worse.
    pub severity_at_least: Option<Severity>,
}

impl Conditions {
    /// Whether every given condition holds for `signal`.
    pub fn hold(&self, signal: &Signal) -> bool {
        self.severity_at_least
            .is_none_or(|threshold| signal.severity.at_least(threshold))
    }
}

/// The severity a rule gives its detections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleSeverity {
    /// The signal's own severity (the default).
    Inherit,
    /// This severity, whatever the signal says.
    Override(Severity),
}

impl RuleSeverity {
    /// The detection's severity for a signal of `signal_severity`.
    pub fn apply(self, signal_severity: Severity) -> Severity {
        match self {
            RuleSeverity::Inherit => signal_severity,
            RuleSeverity::Override(severity) => severity,
        }
    }
}

/// A validated detection rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// `[a-z0-9][a-z0-9-]*`, unique across the set.
    pub id: String,
    /// The rule's semantic version; its text (`to_string`) is what detections record.
    pub version: semver::Version,
    /// What the rule is for, for people.
    pub description: String,
    /// The signals the rule is about (never empty).
    pub matchers: Matchers,
    /// Signals the rule leaves alone even though `matchers` hold (never empty when given).
    pub exclude: Option<Matchers>,
    /// Further conditions on the signal.
    pub conditions: Conditions,
    /// The severity of the rule's detections.
    pub severity: RuleSeverity,
    /// One firing alarm this rule matches is enough to promote (a site-down canary).
    pub promotes_alone: bool,
    /// The file the rule was read from.
    pub path: String,
    /// The line of the rule's `id`.
    pub line: u64,
}

impl Rule {
    /// Whether the rule holds for `signal`: its matchers hold, its exclusions do not, and
    /// its conditions hold. The signal's state is not looked at; [`crate::detection::detect`]
    /// only asks rules about firing signals.
    pub fn matches(&self, signal: &Signal) -> bool {
        self.matchers.matches(signal)
            && !self
                .exclude
                .as_ref()
                .is_some_and(|exclude| exclude.matches(signal))
            && self.conditions.hold(signal)
    }
}

/// A validated silence: signals it matches inside its time range are recorded, never
/// detected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Silence {
    /// `[a-z0-9][a-z0-9-]*`, unique across the set.
    pub id: String,
    /// The signals it silences (never empty).
    pub matchers: Matchers,
    /// The first instant it applies (inclusive).
    pub starts_at: EpochMs,
    /// The first instant it no longer applies (exclusive); after `starts_at`.
    pub ends_at: EpochMs,
    /// Who created it.
    pub created_by: String,
    /// Why.
    pub comment: String,
    /// The file the silence was read from.
    pub path: String,
    /// The line of the silence's `id`.
    pub line: u64,
}

impl Silence {
    /// Whether the silence applies at `event_time`: `starts_at <= event_time < ends_at`.
    /// It takes the signal's event time, never a clock, so replay silences the same signals.
    pub fn is_active_at(&self, event_time: EpochMs) -> bool {
        self.starts_at <= event_time && event_time < self.ends_at
    }

    /// Whether the silence applies to `signal`: active at its event time and matching it.
    pub fn silences(&self, signal: &Signal) -> bool {
        self.is_active_at(signal.event_time) && self.matchers.matches(signal)
    }
}

/// A validated, ordered rule set with its content hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleSet {
    rules: Vec<Rule>,
    silences: Vec<Silence>,
    hash: Digest,
}

impl RuleSet {
    /// Parses and validates `files` into one rule set. Files are taken in byte order of
    /// their paths whatever order they are passed in, so the result does not depend on how
    /// a directory listing happened to be ordered.
    pub fn from_files(files: &[RuleFile]) -> Result<RuleSet, RuleError> {
        if files.len() > RULE_FILES_PER_SET_MAX {
            return Err(set_error(format!(
                "{} rule files given, at most {RULE_FILES_PER_SET_MAX} are accepted; merge files",
                files.len()
            )));
        }
        let mut sorted: Vec<&RuleFile> = files.iter().collect();
        sorted.sort_by(|a, b| a.path.cmp(&b.path));
        for pair in sorted.windows(2) {
            if pair[0].path == pair[1].path {
                return Err(RuleError {
                    path: pair[1].path.clone(),
                    line: None,
                    message: "this path is given twice; pass each rule file once".to_string(),
                });
            }
        }

        let mut builder = Builder::default();
        for file in &sorted {
            builder.add_file(file)?;
        }
        if builder.rules.is_empty() {
            return Err(set_error(
                "the rule set has no rules, so nothing could ever be detected; check that the \
                 rules directory is the right one and holds the rule files"
                    .to_string(),
            ));
        }

        let mut hasher = FieldHasher::new(RULESET_HASH_TAG).u64(sorted.len() as u64);
        for file in &sorted {
            hasher = hasher.str(&file.path).bytes(file.text.as_bytes());
        }
        Ok(RuleSet {
            rules: builder.rules,
            silences: builder.silences,
            hash: hasher.finish(),
        })
    }

    /// The rule set shipped in the repository's `rules/` directory, compiled in.
    pub fn default_rules() -> Result<RuleSet, RuleError> {
        RuleSet::from_files(&RuleSet::default_rule_files())
    }

    /// The files of [`RuleSet::default_rules`], exactly as compiled in, so a caller can
    /// record the rule set it runs with.
    pub fn default_rule_files() -> Vec<RuleFile> {
        DEFAULT_RULE_FILES
            .iter()
            .map(|(path, text)| RuleFile {
                path: (*path).to_string(),
                text: (*text).to_string(),
            })
            .collect()
    }

    /// SHA-256 (tag [`RULESET_HASH_TAG`]) over the number of files and each file's path and
    /// exact bytes, in path order: any byte change of any file changes it.
    pub fn hash(&self) -> Digest {
        self.hash
    }

    /// The rules, in evaluation order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The silences, in file order.
    pub fn silences(&self) -> &[Silence] {
        &self.silences
    }

    /// The first rule in evaluation order that holds for `signal`.
    pub fn first_matching_rule(&self, signal: &Signal) -> Option<&Rule> {
        self.rules.iter().find(|rule| rule.matches(signal))
    }

    /// The first silence that applies to `signal` at its event time.
    pub fn active_silence(&self, signal: &Signal) -> Option<&Silence> {
        self.silences
            .iter()
            .find(|silence| silence.silences(signal))
    }
}

fn set_error(message: String) -> RuleError {
    RuleError {
        path: RULESET_ERROR_PATH.to_string(),
        line: None,
        message,
    }
}

/// Where an id was first defined, for duplicate-id messages.
struct IdSite {
    path: String,
    line: u64,
}

#[derive(Default)]
struct Builder {
    rules: Vec<Rule>,
    silences: Vec<Silence>,
    ids: BTreeMap<String, IdSite>,
}

impl Builder {
    fn add_file(&mut self, file: &RuleFile) -> Result<(), RuleError> {
        let path = file.path.as_str();
        let error_at = |line: Option<u64>, message: String| RuleError {
            path: path.to_string(),
            line,
            message,
        };
        if path.is_empty() || path.len() > RULE_PATH_LEN_MAX {
            return Err(error_at(
                None,
                format!(
                    "a rule file path must be 1 to {RULE_PATH_LEN_MAX} bytes long; pass the \
                     file's path relative to the repository"
                ),
            ));
        }
        if file.text.len() > RULE_FILE_LEN_MAX {
            return Err(error_at(
                None,
                format!(
                    "the file is {} bytes, at most {RULE_FILE_LEN_MAX} are accepted; split it",
                    file.text.len()
                ),
            ));
        }
        let document = parse_document(path, &file.text)?;
        let ctx = Ctx { path };
        for rule in document.rules.unwrap_or_default() {
            if self.rules.len() >= RULES_PER_SET_MAX {
                return Err(ctx.error(
                    &rule.id,
                    format!(
                        "more than {RULES_PER_SET_MAX} rules in the set; remove or merge rules"
                    ),
                ));
            }
            let rule = ctx.rule(rule)?;
            self.claim_id(&ctx, &rule.id, rule.line, "rule")?;
            self.rules.push(rule);
        }
        for silence in document.silences.unwrap_or_default() {
            if self.silences.len() >= SILENCES_PER_SET_MAX {
                return Err(ctx.error(
                    &silence.id,
                    format!(
                        "more than {SILENCES_PER_SET_MAX} silences in the set; delete expired ones"
                    ),
                ));
            }
            let silence = ctx.silence(silence)?;
            self.claim_id(&ctx, &silence.id, silence.line, "silence")?;
            self.silences.push(silence);
        }
        Ok(())
    }

    /// Records `id` as taken; rules and silences share one namespace so that an id in a
    /// detection or a silenced record names exactly one thing.
    fn claim_id(
        &mut self,
        ctx: &Ctx<'_>,
        id: &str,
        line: u64,
        kind: &str,
    ) -> Result<(), RuleError> {
        if let Some(first) = self.ids.get(id) {
            return Err(RuleError {
                path: ctx.path.to_string(),
                line: line_of(line),
                message: format!(
                    "{kind} id `{id}` is already used at {}:{}; ids must be unique across the \
                     rule set (rules and silences alike), rename one of them",
                    first.path, first.line
                ),
            });
        }
        self.ids.insert(
            id.to_string(),
            IdSite {
                path: ctx.path.to_string(),
                line,
            },
        );
        Ok(())
    }
}

fn line_of(line: u64) -> Option<u64> {
    (line > 0).then_some(line)
}

fn parse_document(path: &str, text: &str) -> Result<FileDoc, RuleError> {
    let mut options = serde_saphyr::Options::default();
    options.with_snippet = false;
    // `yes`/`no`/`on`/`off` are not booleans: `promotes_alone: yes` is refused, not guessed.
    options.strict_booleans = true;
    // An AWS account id such as `012345678901` written without quotes stays text, so a
    // matcher keeps its leading zero.
    options.leading_zero_numbers_as_strings = true;
    options.underscored_numbers_as_strings = true;
    serde_saphyr::from_str_with_options::<FileDoc>(text, options).map_err(|error| {
        let location = error.location().filter(|location| location.line() > 0);
        let rendered = error.render_with_options(serde_saphyr::render_options! {
            snippets: serde_saphyr::SnippetMode::Off,
        });
        let message = match location {
            Some(location) => {
                let suffix = format!(" at line {}, column {}", location.line(), location.column());
                let core = rendered.strip_suffix(suffix.as_str()).unwrap_or(&rendered);
                format!(
                    "{core} (column {}); fix the YAML and reload",
                    location.column()
                )
            }
            None => format!("{rendered}; fix the YAML and reload"),
        };
        RuleError {
            path: path.to_string(),
            line: location.map(|location| location.line()),
            message: message.replace(", set DuplicateKeyPolicy in Options if acceptable", ""),
        }
    })
}

/// Validation context: the file being validated.
struct Ctx<'a> {
    path: &'a str,
}

impl Ctx<'_> {
    fn error<T>(&self, at: &Spanned<T>, message: String) -> RuleError {
        RuleError {
            path: self.path.to_string(),
            line: line_of(at.referenced.line()),
            message,
        }
    }

    fn rule(&self, doc: RuleDoc) -> Result<Rule, RuleError> {
        let id = self.id(&doc.id, "rule")?;
        let version = semver::Version::parse(&doc.version.value).map_err(|error| {
            self.error(
                &doc.version,
                format!(
                    "rule `{id}`: version {:?} is not a semantic version ({error}); write \
                     MAJOR.MINOR.PATCH such as 1.2.0",
                    doc.version.value
                ),
            )
        })?;
        let description = self.text(
            &doc.description,
            &format!("rule `{id}`: description"),
            DESCRIPTION_LEN_MAX,
        )?;
        let matchers = self.matchers(&doc.matchers, &format!("rule `{id}`: match"))?;
        if matchers.is_empty() {
            return Err(self.error(
                &doc.matchers,
                format!(
                    "rule `{id}`: `match` is empty; give at least one matcher (write \
                     `source: \"*\"` to match every signal)"
                ),
            ));
        }
        let exclude = match &doc.exclude {
            None => None,
            Some(spanned) => {
                let exclude = self.matchers(spanned, &format!("rule `{id}`: exclude"))?;
                if exclude.is_empty() {
                    return Err(self.error(
                        spanned,
                        format!(
                            "rule `{id}`: `exclude` is empty and would exclude every signal; \
                             give at least one matcher or delete the key"
                        ),
                    ));
                }
                Some(exclude)
            }
        };
        let conditions = match doc.conditions {
            None => Conditions::default(),
            Some(conditions) => Conditions {
                severity_at_least: conditions
                    .severity_at_least
                    .map(|text| {
                        self.severity(&text, &format!("rule `{id}`: conditions.severity_at_least"))
                    })
                    .transpose()?,
            },
        };
        let severity = match &doc.severity {
            None => RuleSeverity::Inherit,
            Some(text) if text.value == "inherit" => RuleSeverity::Inherit,
            Some(text) => {
                RuleSeverity::Override(self.severity(text, &format!("rule `{id}`: severity"))?)
            }
        };
        Ok(Rule {
            id,
            version,
            description,
            matchers,
            exclude,
            conditions,
            severity,
            promotes_alone: doc.promotes_alone.unwrap_or(false),
            path: self.path.to_string(),
            line: doc.id.referenced.line(),
        })
    }

    fn silence(&self, doc: SilenceDoc) -> Result<Silence, RuleError> {
        let id = self.id(&doc.id, "silence")?;
        let matchers = self.matchers(&doc.matchers, &format!("silence `{id}`: matchers"))?;
        if matchers.is_empty() {
            return Err(self.error(
                &doc.matchers,
                format!(
                    "silence `{id}`: `matchers` is empty; name what to silence (write \
                     `service: \"*\"` to silence every signal)"
                ),
            ));
        }
        let time = |text: &Spanned<String>, field: &str| {
            EpochMs::parse(&text.value)
                .map_err(|error| self.error(text, format!("silence `{id}`: {field}: {error}")))
        };
        let starts_at = time(&doc.starts_at, "starts_at")?;
        let ends_at = time(&doc.ends_at, "ends_at")?;
        if ends_at <= starts_at {
            return Err(self.error(
                &doc.ends_at,
                format!(
                    "silence `{id}`: ends_at {} is not after starts_at {}; a silence needs a \
                     time range that ends after it starts",
                    doc.ends_at.value, doc.starts_at.value
                ),
            ));
        }
        if ends_at.0 - starts_at.0 > SILENCE_DURATION_MAX_MS {
            return Err(self.error(
                &doc.ends_at,
                format!(
                    "silence `{id}`: lasts longer than {} days; shorten it and renew it when \
                     it runs out",
                    SILENCE_DURATION_MAX_MS / 86_400_000
                ),
            ));
        }
        let created_by = self.text(
            &doc.created_by,
            &format!("silence `{id}`: created_by"),
            CREATED_BY_LEN_MAX,
        )?;
        let comment = self.text(
            &doc.comment,
            &format!("silence `{id}`: comment"),
            COMMENT_LEN_MAX,
        )?;
        Ok(Silence {
            id,
            matchers,
            starts_at,
            ends_at,
            created_by,
            comment,
            path: self.path.to_string(),
            line: doc.id.referenced.line(),
        })
    }

    fn id(&self, id: &Spanned<String>, kind: &str) -> Result<String, RuleError> {
        let text = id.value.as_str();
        let well_formed = text.len() <= ID_LEN_MAX
            && text
                .bytes()
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && text
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-');
        if !well_formed {
            return Err(self.error(
                id,
                format!(
                    "{kind} id {text:?} is not valid; an id is 1 to {ID_LEN_MAX} characters of \
                     a-z, 0-9 and '-', starting with a letter or digit (e.g. cloudwatch-alarm)"
                ),
            ));
        }
        Ok(text.to_string())
    }

    fn text(
        &self,
        text: &Spanned<String>,
        what: &str,
        len_max: usize,
    ) -> Result<String, RuleError> {
        if text.value.trim().is_empty() {
            return Err(self.error(text, format!("{what} is empty; say it in words")));
        }
        if text.value.len() > len_max {
            return Err(self.error(
                text,
                format!(
                    "{what} is {} bytes, at most {len_max} are accepted; shorten it",
                    text.value.len()
                ),
            ));
        }
        Ok(text.value.clone())
    }

    fn severity(&self, text: &Spanned<String>, what: &str) -> Result<Severity, RuleError> {
        // Exactly as every output writes it: one spelling in files, logs and incidents.
        Severity::ALL
            .into_iter()
            .find(|severity| severity.as_str() == text.value)
            .ok_or_else(|| {
                let inherit = if what.ends_with(": severity") {
                    ", or inherit"
                } else {
                    ""
                };
                self.error(
                    text,
                    format!(
                    "{what}: {:?} is not a severity; write one of SEV1, SEV2, SEV3, SEV4{inherit}",
                    text.value
                ),
                )
            })
    }

    fn matchers(&self, doc: &Spanned<MatchersDoc>, what: &str) -> Result<Matchers, RuleError> {
        let field = |patterns: &Option<Spanned<PatternsDoc>>, name: &str| {
            patterns
                .as_ref()
                .map(|patterns| self.patterns(patterns, &format!("{what}.{name}")))
                .transpose()
        };
        let source = field(&doc.value.source, "source")?;
        if let (Some(patterns), Some(spanned)) = (&source, &doc.value.source) {
            for pattern in patterns.patterns() {
                if !SOURCE_KINDS
                    .iter()
                    .any(|kind| glob_match(pattern, kind.as_str()))
                {
                    return Err(self.error(
                        spanned,
                        format!(
                            "{what}.source: {pattern:?} matches no source, so the rule could \
                             never match a signal; use cloudwatch_eventbridge, \
                             cloudwatch_alarm_action, cloudwatch_sns, alertmanager or native"
                        ),
                    ));
                }
            }
        }
        let mut labels = BTreeMap::new();
        if let Some(label_docs) = &doc.value.labels {
            if label_docs.len() > LABEL_MATCHERS_MAX {
                return Err(self.error(
                    doc,
                    format!("{what}.labels: more than {LABEL_MATCHERS_MAX} label matchers"),
                ));
            }
            for (name, patterns) in label_docs {
                if name.is_empty() || name.len() > LABEL_LEN_MAX {
                    return Err(self.error(
                        patterns,
                        format!("{what}.labels: a label name must be 1 to {LABEL_LEN_MAX} bytes"),
                    ));
                }
                labels.insert(
                    name.clone(),
                    self.patterns(patterns, &format!("{what}.labels.{name}"))?,
                );
            }
        }
        Ok(Matchers {
            source,
            alarm: field(&doc.value.alarm, "alarm")?,
            alarm_name: field(&doc.value.alarm_name, "alarm_name")?,
            environment: field(&doc.value.environment, "environment")?,
            service: field(&doc.value.service, "service")?,
            labels,
        })
    }

    fn patterns(&self, doc: &Spanned<PatternsDoc>, what: &str) -> Result<Patterns, RuleError> {
        let patterns = &doc.value.0;
        if patterns.is_empty() {
            return Err(self.error(
                doc,
                format!("{what}: the list is empty and could never match; give a pattern"),
            ));
        }
        if patterns.len() > PATTERNS_PER_MATCHER_MAX {
            return Err(self.error(
                doc,
                format!("{what}: more than {PATTERNS_PER_MATCHER_MAX} patterns; use a glob"),
            ));
        }
        for pattern in patterns {
            if pattern.is_empty() || pattern.len() > PATTERN_LEN_MAX {
                return Err(self.error(
                    doc,
                    format!(
                        "{what}: a pattern must be 1 to {PATTERN_LEN_MAX} bytes; write \"*\" to \
                         match anything"
                    ),
                ));
            }
            if pattern.trim() != pattern {
                return Err(self.error(
                    doc,
                    format!("{what}: pattern {pattern:?} has surrounding spaces; remove them"),
                ));
            }
        }
        Ok(Patterns(patterns.clone()))
    }
}

// ---- The file format, as parsed. Kept private: validation turns it into the types above.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    // `Option` so that `silences:` followed only by commented examples (a YAML null) reads
    // as an empty list.
    #[serde(default)]
    rules: Option<Vec<RuleDoc>>,
    #[serde(default)]
    silences: Option<Vec<SilenceDoc>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDoc {
    id: Spanned<String>,
    version: Spanned<String>,
    description: Spanned<String>,
    #[serde(rename = "match")]
    matchers: Spanned<MatchersDoc>,
    #[serde(default)]
    exclude: Option<Spanned<MatchersDoc>>,
    #[serde(default)]
    conditions: Option<ConditionsDoc>,
    #[serde(default)]
    severity: Option<Spanned<String>>,
    #[serde(default)]
    promotes_alone: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MatchersDoc {
    #[serde(default)]
    source: Option<Spanned<PatternsDoc>>,
    #[serde(default)]
    alarm: Option<Spanned<PatternsDoc>>,
    #[serde(default)]
    alarm_name: Option<Spanned<PatternsDoc>>,
    #[serde(default)]
    environment: Option<Spanned<PatternsDoc>>,
    #[serde(default)]
    service: Option<Spanned<PatternsDoc>>,
    #[serde(default)]
    labels: Option<BTreeMap<String, Spanned<PatternsDoc>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConditionsDoc {
    #[serde(default)]
    severity_at_least: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SilenceDoc {
    id: Spanned<String>,
    matchers: Spanned<MatchersDoc>,
    starts_at: Spanned<String>,
    ends_at: Spanned<String>,
    created_by: Spanned<String>,
    comment: Spanned<String>,
}

/// A matcher value: one pattern or a list of patterns. Plain YAML scalars are typed by
/// their look, so an unquoted AWS account id arrives as an integer; it is turned back into
/// its decimal text. Booleans and floats are refused rather than re-spelled.
struct PatternsDoc(Vec<String>);

impl<'de> Deserialize<'de> for PatternsDoc {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(PatternsVisitor)
    }
}

struct PatternsVisitor;

impl<'de> Visitor<'de> for PatternsVisitor {
    type Value = PatternsDoc;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a glob pattern or a list of glob patterns")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<PatternsDoc, E> {
        Ok(PatternsDoc(vec![text.to_string()]))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<PatternsDoc, E> {
        Ok(PatternsDoc(vec![value.to_string()]))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<PatternsDoc, E> {
        Ok(PatternsDoc(vec![value.to_string()]))
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<PatternsDoc, E> {
        Err(E::custom(format!(
            "{value} reads as a boolean; quote it (\"{value}\") to match text"
        )))
    }

    fn visit_f64<E: de::Error>(self, _value: f64) -> Result<PatternsDoc, E> {
        Err(E::custom(
            "this value reads as a number with a fraction; quote it to match text",
        ))
    }

    fn visit_unit<E: de::Error>(self) -> Result<PatternsDoc, E> {
        Err(E::custom(
            "the value is empty; give a pattern, or \"*\" to match anything",
        ))
    }

    fn visit_none<E: de::Error>(self) -> Result<PatternsDoc, E> {
        self.visit_unit()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PatternsDoc, A::Error> {
        let mut patterns = Vec::new();
        while let Some(PatternsDoc(pattern)) = seq.next_element_seed(ScalarPattern)? {
            if patterns.len() >= PATTERNS_PER_MATCHER_MAX {
                return Err(de::Error::custom(format!(
                    "more than {PATTERNS_PER_MATCHER_MAX} patterns in one list; use a glob"
                )));
            }
            patterns.extend(pattern);
        }
        Ok(PatternsDoc(patterns))
    }
}

/// One list element: a scalar pattern only (a list inside a list is refused).
struct ScalarPattern;

impl<'de> de::DeserializeSeed<'de> for ScalarPattern {
    type Value = PatternsDoc;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<PatternsDoc, D::Error> {
        deserializer.deserialize_any(ScalarPatternVisitor)
    }
}

struct ScalarPatternVisitor;

impl<'de> Visitor<'de> for ScalarPatternVisitor {
    type Value = PatternsDoc;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a glob pattern")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<PatternsDoc, E> {
        PatternsVisitor.visit_str(text)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<PatternsDoc, E> {
        PatternsVisitor.visit_u64(value)
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<PatternsDoc, E> {
        PatternsVisitor.visit_i64(value)
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<PatternsDoc, E> {
        PatternsVisitor.visit_bool(value)
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<PatternsDoc, E> {
        PatternsVisitor.visit_f64(value)
    }

    fn visit_unit<E: de::Error>(self) -> Result<PatternsDoc, E> {
        PatternsVisitor.visit_unit()
    }

    fn visit_none<E: de::Error>(self) -> Result<PatternsDoc, E> {
        PatternsVisitor.visit_unit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::{SignalId, SignalState, SIGNAL_SCHEMA_VERSION};
    use proptest::prelude::*;

    fn file(path: &str, text: &str) -> RuleFile {
        RuleFile {
            path: path.to_string(),
            text: text.to_string(),
        }
    }

    fn load(text: &str) -> Result<RuleSet, RuleError> {
        RuleSet::from_files(&[file("rules/test.yaml", text)])
    }

    fn signal(source: SourceKind, environment: &str, service: &str) -> Signal {
        let alarm = format!("arn:aws:cloudwatch:us-east-1:{environment}:alarm:{service}-api-5xx");
        let event_time = EpochMs(1_795_489_209_512);
        Signal {
            schema_version: SIGNAL_SCHEMA_VERSION,
            id: SignalId::derive(&alarm, SignalState::Alarm, event_time),
            alarm,
            alarm_name: format!("{service}-api-5xx"),
            state: SignalState::Alarm,
            event_time,
            environment: environment.to_string(),
            service: service.to_string(),
            severity: Severity::Sev2,
            source,
            summary: "Threshold Crossed".to_string(),
            labels: BTreeMap::from([("region".to_string(), "us-east-1".to_string())]),
        }
    }

    const MINIMAL: &str = "\
rules:
  - id: any-alarm
    version: 1.0.0
    description: anything
    match:
      source: \"*\"
";

    #[test]
    fn the_default_rules_load_and_cover_every_source() {
        let rules = RuleSet::default_rules().expect("the shipped rules load");
        for kind in SOURCE_KINDS {
            let signal = signal(kind, "123456789012", "orders");
            assert!(
                rules.first_matching_rule(&signal).is_some(),
                "no default rule for {kind}"
            );
        }
        assert!(rules.rules().iter().all(|rule| !rule.promotes_alone));
        assert!(rules.silences().is_empty());
    }

    #[test]
    fn source_kinds_lists_every_kind() {
        // Adding a SourceKind variant breaks this match; add the variant to SOURCE_KINDS too.
        for kind in SOURCE_KINDS {
            match kind {
                SourceKind::CloudwatchEventbridge
                | SourceKind::CloudwatchAlarmAction
                | SourceKind::CloudwatchSns
                | SourceKind::Alertmanager
                | SourceKind::Native => {}
            }
        }
    }

    #[test]
    fn errors_name_path_and_line() {
        let error = RuleError {
            path: "rules/a.yaml".into(),
            line: Some(7),
            message: "bad".into(),
        };
        assert_eq!(error.to_string(), "rules/a.yaml:7: bad");
        let error = RuleError {
            path: "rules/a.yaml".into(),
            line: None,
            message: "bad".into(),
        };
        assert_eq!(error.to_string(), "rules/a.yaml: bad");
    }

    #[test]
    fn matcher_values_keep_their_text() {
        let text = "\
rules:
  - id: accounts
    version: 1.0.0
    description: accounts written without quotes
    match:
      environment: [123456789012, 012345678901, \"0x1f\"]
      labels: { team: payments-* }
";
        let rules = load(text).expect("loads");
        let matchers = &rules.rules()[0].matchers;
        let environment = matchers.environment.as_ref().expect("given");
        assert_eq!(
            environment.patterns(),
            ["123456789012", "012345678901", "0x1f"]
        );
        assert!(matchers.labels["team"].matches("payments-core"));
        let single = MINIMAL.replace("source: \"*\"", "environment: 012345678901");
        let rules = load(&single).expect("loads");
        let environment = rules.rules()[0]
            .matchers
            .environment
            .as_ref()
            .expect("given");
        assert_eq!(environment.patterns(), ["012345678901"]);
    }

    #[test]
    fn refuses_what_it_cannot_read_exactly() {
        let cases = [
            ("environment: true", 6, "boolean"),
            ("environment: 1.5", 6, "fraction"),
            ("environment: ~", 6, "empty"),
            ("environment: []", 6, "empty"),
            ("environment: \"\"", 6, "1 to"),
            ("environment: \" prod\"", 6, "spaces"),
            ("source: cloudwatch_eventbrige", 6, "matches no source"),
            ("source: [alertmanager, [native]]", 6, "glob pattern"),
            ("labels: { \"\": x }", 6, "label name"),
        ];
        for (matcher, line, needle) in cases {
            let text = MINIMAL.replace("source: \"*\"", matcher);
            let error = load(&text).expect_err(matcher);
            assert_eq!(error.line, Some(line), "{matcher}: {error}");
            assert!(error.message.contains(needle), "{matcher}: {error}");
        }
        // YAML 1.2: `yes` is text, so it cannot be a boolean, and a matcher reads it as text.
        let error = load(&MINIMAL.replace(
            "version: 1.0.0\n",
            "version: 1.0.0\n    promotes_alone: yes\n",
        ))
        .expect_err("yes is not a boolean");
        assert_eq!(error.line, Some(4), "{error}");
        let rules = load(&MINIMAL.replace("source: \"*\"", "environment: yes")).expect("loads");
        let environment = rules.rules()[0]
            .matchers
            .environment
            .as_ref()
            .expect("given");
        assert_eq!(environment.patterns(), ["yes"]);
    }

    #[test]
    fn empty_and_null_lists_parse() {
        for silences in [
            "silences: []\n",
            "silences:\n# - id: example\n",
            "",
            "# nothing\n",
        ] {
            let rules = RuleSet::from_files(&[
                file("rules/a.yaml", MINIMAL),
                file("rules/silences.yaml", silences),
            ])
            .expect(silences);
            assert!(rules.silences().is_empty());
        }
    }

    #[test]
    fn refuses_sets_that_could_never_detect() {
        let error = RuleSet::from_files(&[]).expect_err("no files");
        assert_eq!(error.path, RULESET_ERROR_PATH);
        let error = load("silences: []\n").expect_err("no rules");
        assert!(error.message.contains("no rules"), "{error}");
        let error = load(&MINIMAL.replace("source: \"*\"", "{}")).expect_err("empty match");
        assert!(error.message.contains("`match` is empty"), "{error}");
    }

    #[test]
    fn refuses_duplicate_paths_and_oversized_files() {
        let error =
            RuleSet::from_files(&[file("rules/a.yaml", MINIMAL), file("rules/a.yaml", MINIMAL)])
                .expect_err("same path twice");
        assert_eq!(error.path, "rules/a.yaml");
        let big = format!("{MINIMAL}#{}\n", "x".repeat(RULE_FILE_LEN_MAX));
        let error = load(&big).expect_err("too big");
        assert!(error.message.contains("split it"), "{error}");
    }

    #[test]
    fn exclude_leaves_matched_signals_alone() {
        let text = format!("{MINIMAL}    exclude:\n      service: orders\n");
        let rules = load(&text).expect("loads");
        assert!(rules
            .first_matching_rule(&signal(SourceKind::Native, "prod", "orders"))
            .is_none());
        assert!(rules
            .first_matching_rule(&signal(SourceKind::Native, "prod", "payments"))
            .is_some());
        let error = load(&format!("{MINIMAL}    exclude: {{}}\n")).expect_err("empty exclude");
        assert_eq!(error.line, Some(7), "{error}");
    }

    #[test]
    fn labels_must_be_present_to_match() {
        let rules =
            load(&MINIMAL.replace("source: \"*\"", "labels: { region: \"*\" }")).expect("loads");
        let mut unlabelled = signal(SourceKind::Native, "prod", "orders");
        assert!(rules.first_matching_rule(&unlabelled).is_some());
        unlabelled.labels.clear();
        assert!(rules.first_matching_rule(&unlabelled).is_none());
    }

    #[test]
    fn silences_are_bounded_and_need_who_and_why() {
        let silence = "\
silences:
  - id: drill
    matchers: { service: orders }
    starts_at: 2026-11-24T02:00:00Z
    ends_at: 2026-11-24T04:00:00Z
    created_by: alice@example.com
    comment: planned failover drill
";
        let ok = format!("{MINIMAL}{silence}");
        let rules = load(&ok).expect("loads");
        assert_eq!(
            rules.silences()[0].ends_at.0 - rules.silences()[0].starts_at.0,
            7_200_000
        );
        let cases = [
            (
                "ends_at: 2026-11-24T04:00:00Z",
                "ends_at: 2027-11-24T04:00:00Z",
                11,
                "longer than 30 days",
            ),
            (
                "created_by: alice@example.com",
                "created_by: \" \"",
                12,
                "created_by is empty",
            ),
            (
                "comment: planned failover drill",
                "comment: \"\"",
                13,
                "comment is empty",
            ),
            (
                "starts_at: 2026-11-24T02:00:00Z",
                "starts_at: 2026-11-24",
                10,
                "RFC 3339",
            ),
            (
                "matchers: { service: orders }",
                "matchers: {}",
                9,
                "`matchers` is empty",
            ),
            ("id: drill", "id: Drill", 8, "not valid"),
        ];
        for (from, to, line, needle) in cases {
            let error = load(&ok.replace(from, to)).expect_err(to);
            assert_eq!(error.line, Some(line), "{to}: {error}");
            assert!(error.message.contains(needle), "{to}: {error}");
        }
    }

    #[test]
    fn ids_are_one_namespace() {
        let text = format!(
            "{MINIMAL}silences:\n  - id: any-alarm\n    matchers: {{ service: x }}\n    \
             starts_at: 2026-11-24T02:00:00Z\n    ends_at: 2026-11-24T04:00:00Z\n    \
             created_by: a\n    comment: b\n"
        );
        let error = load(&text).expect_err("shared id");
        assert_eq!(error.line, Some(8), "{error}");
        assert!(error.message.contains("rules/test.yaml:2"), "{error}");
    }

    #[test]
    fn hash_is_over_sorted_paths_and_exact_bytes() {
        let a = file("rules/a.yaml", MINIMAL);
        let b = file("rules/b.yaml", "silences: []\n");
        let forward = RuleSet::from_files(&[a.clone(), b.clone()]).expect("loads");
        let backward = RuleSet::from_files(&[b.clone(), a.clone()]).expect("loads");
        assert_eq!(forward.hash(), backward.hash());
        let renamed =
            RuleSet::from_files(&[file("rules/c.yaml", MINIMAL), b.clone()]).expect("loads");
        assert_ne!(forward.hash(), renamed.hash());
        let comment =
            RuleSet::from_files(&[a, file("rules/b.yaml", "silences: [] \n")]).expect("loads");
        assert_ne!(forward.hash(), comment.hash());
    }

    proptest! {
        #[test]
        fn from_files_never_panics(text in "\\PC{0,300}") {
            let _ = load(&text);
        }

        #[test]
        fn from_files_never_panics_on_yamlish_text(
            text in "(rules|silences|id|version|match|source|labels|- |: |\\[|\\]|\\{|\\}|\\*|&a|\\*a|<<|\n|  |\"|1\\.0\\.0|x)*"
        ) {
            let _ = load(&text);
        }
    }
}
