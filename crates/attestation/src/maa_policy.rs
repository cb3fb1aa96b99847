//! Microsoft Azure Attestation (MAA) policies in the claim-rule grammar (policy versions 1.0,
//! 1.1 and 1.2): a bounded hand-written lexer and recursive-descent parser, and an evaluator
//! over the token's claims.
//!
//! ```text
//! version=1.1;
//! configurationrules { => issueproperty(type="x-ms-sgx-tcbidentifier", value="azuredefault"); };
//! authorizationrules {
//!     [type=="x-ms-sgx-is-debuggable", value==false] && [type=="x-ms-sgx-svn", value>=2]
//!         => permit();
//! };
//! issuancerules { c:[type=="x-ms-sgx-mrsigner"] => issue(type="signer", value=c.value); };
//! ```
//!
//! # Grammar
//!
//! - `version=MAJOR.MINOR;` first; `1.0`, `1.1` and `1.2` are accepted.
//! - Then, in this order: `configurationrules { … };` (optional, version 1.1 and later),
//!   `authorizationrules { … };` (required) and `issuancerules { … };` (optional). Anything after
//!   the last section is an error, as is a repeated or misplaced section.
//! - A rule is `Condition && Condition … => action(…);` or `=> action(…);`. A condition is
//!   `[prop OP operand, …]`, optionally bound to an identifier (`c:[…]`) or, from version 1.2,
//!   negated (`![…]`: true when no claim matches). Properties are `type`, `value`, `issuer` and
//!   `valueType`. Operands are string literals (escapes `\"` and `\\`), integers (`i64`, with an
//!   optional `-`), `true`/`false`, or `id.prop` naming a claim bound by an *earlier* condition of
//!   the same rule.
//! - Operators: `==` and `!=` for every type; `<`, `<=`, `>`, `>=` for integers only (a string
//!   or boolean literal after them is a parse error). Comparing values of different types is
//!   false, never an error (`!=` included).
//! - Actions per section: configurationrules `issueproperty`; authorizationrules `permit()`,
//!   `deny()`, `add`; issuancerules `add`, `issue`, `issueproperty`. A claim argument is
//!   `type=…, value=…` (either order) or `claim=id`.
//! - Keywords (`version`, section names, action verbs, argument and property names,
//!   `true`/`false`) are matched ignoring ASCII case: Microsoft's policy-examples page renders
//!   its default SGX policy with `Version= 1.0;`. Identifiers and strings are case-sensitive.
//! - Comments: `// …` (used in Microsoft's version 1.2 samples) and `/* … */`.
//! - Bounds: text over [`MAX_POLICY_BYTES`], more than [`MAX_RULES`] rules, a string literal over
//!   [`MAX_STRING_BYTES`] or a rule with more than [`MAX_CONDITIONS`] conditions is rejected.
//!
//! Not supported, each a [`ParseError::Unsupported`] at its position (never ignored): the
//! version 1.2 functions (`JmesPath`, `JsonToClaimValue`, `IsSubsetOf`, `AppendString`,
//! `NegateBool`, `ContainsOnlyValue`, or any other call), fractional numbers. Microsoft's samples
//! with `type="…"` (one `=`) inside a condition or without the `;` that ends a rule are rejected
//! with "expected …" errors: every machine-readable MAA policy (the JWS payloads) uses `==` and `;`.
//!
//! # Evaluation (see [`MaaPolicy::evaluate`])
//!
//! 1. Incoming claims: every top-level string, integer (fits `i64`) or boolean entry of the claim
//!    object is a claim of that type, issuer `AttestationService`; an array of such scalars gives
//!    one claim per element (MAA claim sets may hold several claims of one type); objects, nulls
//!    and fractions are not claims. The legacy names `$is-debuggable`, `$sgx-mrsigner`,
//!    `$sgx-mrenclave`, `$product-id`, `$svn` and `$tee` (legacy incoming names MAA still accepts) are
//!    added from the short claims (`is-debuggable`, …) or, if absent, from their `x-ms-sgx-*` /
//!    `x-ms-attestation-type` counterparts.
//! 2. A condition holds when at least one claim satisfies all its property conditions. A rule
//!    fires for every combination of claims bound to its identifiers that satisfies all its
//!    conditions (evaluated left to right, so `[… value==F1.value]` sees `F1`'s claim); its
//!    action runs once per combination, all matched against the claim set as it was before the
//!    rule. Claims from `add`, `issue` and `issueproperty` join the set for later rules with
//!    issuer `AttestationPolicy` (`issue(claim=c)` too: the policy issued the copy).
//! 3. configurationrules run first; their `issueproperty` claims go to
//!    [`MaaOutcome::properties`].
//! 4. authorizationrules run in order. A fired `deny()` denies at once (deny wins over any
//!    permit, before or after it); when no `permit()` fired, attestation is denied. Microsoft's
//!    docs say what permit and deny mean but not how they combine: this is the conservative
//!    reading (as in AD FS, the claim language MAA derives from, where deny takes precedence).
//! 5. issuancerules run in order and never deny (policy-version-1-0: they "cannot be used to
//!    fail attestation"); `issue` claims go to [`MaaOutcome::claims`], `issueproperty` claims to
//!    [`MaaOutcome::properties`]. A type issued more than once becomes a JSON array of the values
//!    in issue order (the JWT convention for a multi-valued claim); the docs are silent on it.
//! 6. Evaluation is bounded ([`MAX_STEPS`] steps, where comparing two long strings of equal
//!    length costs by their bytes; [`MAX_BINDINGS`] combinations per rule; [`MAX_ADDED_CLAIMS`]
//!    claims and [`MAX_ADDED_BYTES`] bytes added by the policy): exceeding a bound denies
//!    ([`MaaDeny::LimitExceeded`]), in every section. The worst policy found in review takes
//!    about 1.5 ms to hit a bound.
//!
//! Type mismatches compare false, which would make a `deny()` rule that compares a claim with
//! a literal of the wrong type a silent no-op. For the claims the service issues (booleans,
//! integers and lower-case hex measurements, see `known_claim_form`), [`MaaPolicy::parse`]
//! therefore refuses such a literal ([`ParseError::ClaimType`]), e.g. `value=="true"` for
//! `x-ms-sgx-is-debuggable` or upper-case hex for `x-ms-sgx-mrsigner`.
//!
//! Sources: learn.microsoft.com/azure/attestation/claim-rule-grammar, author-sign-policy,
//! policy-examples, policy-version-1-0/-1-1/-1-2 and claim-rule-functions.
#![deny(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::as_conversions,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::fmt;

use serde_json::{Map, Value};

/// Largest accepted policy text, in bytes.
pub const MAX_POLICY_BYTES: usize = 65_536;
/// Most rules in a policy (all sections together).
pub const MAX_RULES: usize = 1000;
/// Longest string literal, in bytes (after unescaping).
pub const MAX_STRING_BYTES: usize = 8192;
/// Most conditions in one rule.
pub const MAX_CONDITIONS: usize = 64;
/// Most evaluation steps in one evaluation: each comparison of a claim property costs one
/// step, plus one for every [`STEP_BYTES`] bytes when it compares two strings of equal length
/// (what comparing them costs). A client may send a draft policy with every request, so this
/// bounds its cost per request.
pub const MAX_STEPS: u64 = 250_000;
/// Claim bytes that count as one more step per comparison (see [`MAX_STEPS`]).
pub const STEP_BYTES: usize = 64;
/// Most claim combinations one rule may fire for.
pub const MAX_BINDINGS: usize = 1024;
/// Most claims the policy may add to the claim set in one evaluation.
pub const MAX_ADDED_CLAIMS: usize = 4096;
/// Most bytes (types and values) of the claims the policy may add in one evaluation: issued
/// claims end up in the token.
pub const MAX_ADDED_BYTES: usize = 64 * 1024;

const SERVICE: &str = "AttestationService";
const POLICY: &str = "AttestationPolicy";

/// Legacy `$` incoming claim names that MAA still accepts: (`$` name, short claim,
/// `x-ms-*` claim used when the short one is absent).
const LEGACY: [(&str, &str, &str); 6] = [
    ("$is-debuggable", "is-debuggable", "x-ms-sgx-is-debuggable"),
    ("$sgx-mrsigner", "sgx-mrsigner", "x-ms-sgx-mrsigner"),
    ("$sgx-mrenclave", "sgx-mrenclave", "x-ms-sgx-mrenclave"),
    ("$product-id", "product-id", "x-ms-sgx-product-id"),
    ("$svn", "svn", "x-ms-sgx-svn"),
    ("$tee", "tee", "x-ms-attestation-type"),
];

/// Errors of [`MaaPolicy::parse`]; positions are 1-based, columns count characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The text is over [`MAX_POLICY_BYTES`].
    #[error("policy is {len} bytes, over the limit of {max}")]
    TooLarge {
        /// Length of the text.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The text does not follow the grammar.
    #[error("line {line}, column {column}: {message}")]
    Syntax {
        /// Line.
        line: usize,
        /// Column.
        column: usize,
        /// What was expected and what was found.
        message: String,
    },
    /// A bound other than the text size is exceeded (rules, string length, conditions).
    #[error("line {line}, column {column}: more than {max} {what}")]
    Limit {
        /// Line.
        line: usize,
        /// Column.
        column: usize,
        /// What is counted.
        what: &'static str,
        /// The limit.
        max: usize,
    },
    /// A condition compares a claim that the service issues with a literal of another type or
    /// form, so it could never hold: a `deny()` behind it would silently never fire.
    #[error("a condition on {claim} compares it with {found}, but {claim} is {expected}")]
    ClaimType {
        /// The claim type.
        claim: String,
        /// What the claim's values are.
        expected: &'static str,
        /// The literal in the policy.
        found: String,
    },
    /// A feature of the MAA grammar this engine does not implement.
    #[error("line {line}, column {column}: {feature} is not supported")]
    Unsupported {
        /// Line.
        line: usize,
        /// Column.
        column: usize,
        /// The feature.
        feature: String,
    },
}

impl ParseError {
    /// The (line, column) of the error, if it has one.
    #[must_use]
    pub fn position(&self) -> Option<(usize, usize)> {
        match self {
            Self::TooLarge { .. } | Self::ClaimType { .. } => None,
            Self::Syntax { line, column, .. }
            | Self::Limit { line, column, .. }
            | Self::Unsupported { line, column, .. } => Some((*line, *column)),
        }
    }
}

/// A policy section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// `configurationrules` (version 1.1+).
    Configuration,
    /// `authorizationrules`.
    Authorization,
    /// `issuancerules`.
    Issuance,
}

impl Section {
    /// The keyword of the section.
    #[must_use]
    pub fn keyword(self) -> &'static str {
        match self {
            Self::Configuration => "configurationrules",
            Self::Authorization => "authorizationrules",
            Self::Issuance => "issuancerules",
        }
    }
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.keyword())
    }
}

/// Why [`MaaPolicy::evaluate`] refused the claims.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MaaDeny {
    /// An authorization rule with `deny()` fired.
    #[error("authorizationrules rule {index} denied: {rule}")]
    Denied {
        /// 1-based index of the rule in authorizationrules.
        index: usize,
        /// The rule's source text, trimmed.
        rule: String,
    },
    /// No authorization rule with `permit()` fired.
    #[error("no authorizationrules rule permitted")]
    NoPermit,
    /// A rule exceeded an evaluation bound.
    #[error("{section} rule {index} exceeded the limit on {limit}: {rule}")]
    LimitExceeded {
        /// The section of the rule.
        section: Section,
        /// 1-based index of the rule in its section.
        index: usize,
        /// The rule's source text, trimmed.
        rule: String,
        /// The bound.
        limit: &'static str,
    },
}

/// What a permitted evaluation produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MaaOutcome {
    /// Claims issued by `issue` (key order: serde_json's; a type issued more than once holds an
    /// array of its values in issue order).
    pub claims: Map<String, Value>,
    /// Claims issued by `issueproperty` (configurationrules and issuancerules), same layout.
    pub properties: Map<String, Value>,
}

/// A parsed claim-rule-grammar policy.
#[derive(Debug, Clone, PartialEq)]
pub struct MaaPolicy {
    version: (u8, u8),
    configuration: Vec<Rule>,
    authorization: Vec<Rule>,
    issuance: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq)]
struct Rule {
    conditions: Vec<Condition>,
    action: Action,
    source: String,
}

#[derive(Debug, Clone, PartialEq)]
struct Condition {
    negated: bool,
    binds: bool,
    props: Vec<PropCond>,
}

#[derive(Debug, Clone, PartialEq)]
struct PropCond {
    prop: Prop,
    op: Op,
    rhs: Operand,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prop {
    Type,
    Value,
    Issuer,
    ValueType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Lit(ClaimValue),
    /// A property of the claim bound by condition `slot` of the same rule.
    Ref {
        slot: usize,
        prop: Prop,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Action {
    Permit,
    Deny,
    Add(ClaimSpec),
    Issue(ClaimSpec),
    IssueProperty(ClaimSpec),
}

#[derive(Debug, Clone, PartialEq)]
enum ClaimSpec {
    Copy(usize),
    New { ty: Operand, value: Operand },
}

#[derive(Debug, Clone, PartialEq)]
enum ClaimValue {
    Str(String),
    Int(i64),
    Bool(bool),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ValRef<'a> {
    Str(&'a str),
    Int(i64),
    Bool(bool),
}

impl ClaimValue {
    /// Bytes of the value, for the evaluation bounds.
    fn byte_len(&self) -> usize {
        match self {
            Self::Str(s) => s.len(),
            Self::Int(_) | Self::Bool(_) => 8,
        }
    }

    fn as_ref(&self) -> ValRef<'_> {
        match self {
            Self::Str(s) => ValRef::Str(s),
            Self::Int(i) => ValRef::Int(*i),
            Self::Bool(b) => ValRef::Bool(*b),
        }
    }

    fn to_json(&self) -> Value {
        match self {
            Self::Str(s) => Value::String(s.clone()),
            Self::Int(i) => Value::from(*i),
            Self::Bool(b) => Value::Bool(*b),
        }
    }

    fn from_json(v: &Value) -> Option<Self> {
        match v {
            Value::String(s) => Some(Self::Str(s.clone())),
            Value::Bool(b) => Some(Self::Bool(*b)),
            Value::Number(n) => n.as_i64().map(Self::Int),
            _ => None,
        }
    }
}

impl ValRef<'_> {
    fn to_owned_value(self) -> ClaimValue {
        match self {
            Self::Str(s) => ClaimValue::Str(s.to_owned()),
            Self::Int(i) => ClaimValue::Int(i),
            Self::Bool(b) => ClaimValue::Bool(b),
        }
    }
}

#[derive(Debug, Clone)]
struct Claim {
    ty: String,
    value: ClaimValue,
    issuer: &'static str,
}

impl Claim {
    fn prop(&self, p: Prop) -> ValRef<'_> {
        match p {
            Prop::Type => ValRef::Str(&self.ty),
            Prop::Value => self.value.as_ref(),
            Prop::Issuer => ValRef::Str(self.issuer),
            Prop::ValueType => ValRef::Str(match self.value {
                ClaimValue::Str(_) => "String",
                ClaimValue::Int(_) => "Integer",
                ClaimValue::Bool(_) => "Boolean",
            }),
        }
    }
}

/// Steps one comparison costs: one, plus one per [`STEP_BYTES`] of two strings of equal length
/// (strings of different lengths differ at once).
fn compare_cost(lhs: ValRef<'_>, rhs: Option<ValRef<'_>>) -> u64 {
    let bytes = match (lhs, rhs) {
        (ValRef::Str(a), Some(ValRef::Str(b))) if a.len() == b.len() => a.len(),
        _ => 0,
    };
    u64::try_from(bytes / STEP_BYTES)
        .unwrap_or(u64::MAX)
        .saturating_add(1)
}

fn compare(lhs: ValRef<'_>, op: Op, rhs: ValRef<'_>) -> bool {
    match (lhs, rhs) {
        (ValRef::Int(a), ValRef::Int(b)) => match op {
            Op::Eq => a == b,
            Op::Ne => a != b,
            Op::Lt => a < b,
            Op::Le => a <= b,
            Op::Gt => a > b,
            Op::Ge => a >= b,
        },
        (ValRef::Str(a), ValRef::Str(b)) => match op {
            Op::Eq => a == b,
            Op::Ne => a != b,
            _ => false,
        },
        (ValRef::Bool(a), ValRef::Bool(b)) => match op {
            Op::Eq => a == b,
            Op::Ne => a != b,
            _ => false,
        },
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum P {
    Assign,
    EqEq,
    NotEq,
    Lt,
    Le,
    Gt,
    Ge,
    Arrow,
    AndAnd,
    Bang,
    Colon,
    Semi,
    Comma,
    Dot,
    LParen,
    RParen,
    LBracket,
    RBracket,
    LBrace,
    RBrace,
}

impl P {
    fn text(self) -> &'static str {
        match self {
            Self::Assign => "=",
            Self::EqEq => "==",
            Self::NotEq => "!=",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
            Self::Arrow => "=>",
            Self::AndAnd => "&&",
            Self::Bang => "!",
            Self::Colon => ":",
            Self::Semi => ";",
            Self::Comma => ",",
            Self::Dot => ".",
            Self::LParen => "(",
            Self::RParen => ")",
            Self::LBracket => "[",
            Self::RBracket => "]",
            Self::LBrace => "{",
            Self::RBrace => "}",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Ident(String),
    Str(String),
    /// Digits with an optional leading `-` and an optional `.digits` part.
    Num(String),
    Punct(P),
    Eof,
}

#[derive(Debug, Clone)]
struct Tok {
    kind: Kind,
    line: usize,
    col: usize,
    start: usize,
    end: usize,
}

fn describe(k: &Kind) -> String {
    match k {
        Kind::Ident(s) => format!("`{s}`"),
        Kind::Str(_) => "a string".to_owned(),
        Kind::Num(n) => format!("number {n}"),
        Kind::Punct(p) => format!("`{}`", p.text()),
        Kind::Eof => "end of input".to_owned(),
    }
}

fn syntax(line: usize, column: usize, message: impl Into<String>) -> ParseError {
    ParseError::Syntax {
        line,
        column,
        message: message.into(),
    }
}

struct Lexer<'a> {
    rest: &'a str,
    offset: usize,
    line: usize,
    col: usize,
}

impl<'a> Lexer<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            rest: text,
            offset: 0,
            line: 1,
            col: 1,
        }
    }

    fn peek(&self) -> Option<char> {
        self.rest.chars().next()
    }

    fn peek2(&self) -> Option<char> {
        self.rest.chars().nth(1)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        let n = c.len_utf8();
        self.rest = self.rest.get(n..).unwrap_or("");
        self.offset = self.offset.saturating_add(n);
        if c == '\n' {
            self.line = self.line.saturating_add(1);
            self.col = 1;
        } else {
            self.col = self.col.saturating_add(1);
        }
        Some(c)
    }

    /// Skips whitespace and comments.
    fn skip_trivia(&mut self) -> Result<(), ParseError> {
        loop {
            match (self.peek(), self.peek2()) {
                (Some(c), _) if c.is_whitespace() => {
                    self.bump();
                }
                (Some('/'), Some('/')) => {
                    while self.peek().is_some_and(|c| c != '\n') {
                        self.bump();
                    }
                }
                (Some('/'), Some('*')) => {
                    let (line, col) = (self.line, self.col);
                    self.bump();
                    self.bump();
                    loop {
                        match (self.peek(), self.peek2()) {
                            (Some('*'), Some('/')) => {
                                self.bump();
                                self.bump();
                                break;
                            }
                            (Some(_), _) => {
                                self.bump();
                            }
                            (None, _) => {
                                return Err(syntax(line, col, "unterminated `/*` comment"));
                            }
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn next_token(&mut self) -> Result<Tok, ParseError> {
        self.skip_trivia()?;
        let (line, col, start) = (self.line, self.col, self.offset);
        let tok = |kind, end| Tok {
            kind,
            line,
            col,
            start,
            end,
        };
        let Some(c) = self.peek() else {
            return Ok(tok(Kind::Eof, start));
        };
        let kind = if c.is_ascii_alphabetic() || c == '_' {
            let mut s = String::new();
            while let Some(c) = self
                .peek()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            {
                s.push(c);
                self.bump();
            }
            Kind::Ident(s)
        } else if c.is_ascii_digit()
            || (c == '-' && self.peek2().is_some_and(|d| d.is_ascii_digit()))
        {
            let mut s = String::new();
            if c == '-' {
                s.push(c);
                self.bump();
            }
            self.digits(&mut s);
            if self.peek() == Some('.') && self.peek2().is_some_and(|d| d.is_ascii_digit()) {
                s.push('.');
                self.bump();
                self.digits(&mut s);
            }
            Kind::Num(s)
        } else if c == '"' {
            Kind::Str(self.string(line, col)?)
        } else {
            self.bump();
            let next = self.peek();
            let two = |lx: &mut Self, p| {
                lx.bump();
                p
            };
            let p = match (c, next) {
                ('=', Some('=')) => two(self, P::EqEq),
                ('=', Some('>')) => two(self, P::Arrow),
                ('!', Some('=')) => two(self, P::NotEq),
                ('<', Some('=')) => two(self, P::Le),
                ('>', Some('=')) => two(self, P::Ge),
                ('&', Some('&')) => two(self, P::AndAnd),
                ('=', _) => P::Assign,
                ('!', _) => P::Bang,
                ('<', _) => P::Lt,
                ('>', _) => P::Gt,
                (':', _) => P::Colon,
                (';', _) => P::Semi,
                (',', _) => P::Comma,
                ('.', _) => P::Dot,
                ('(', _) => P::LParen,
                (')', _) => P::RParen,
                ('[', _) => P::LBracket,
                (']', _) => P::RBracket,
                ('{', _) => P::LBrace,
                ('}', _) => P::RBrace,
                ('&', _) => return Err(syntax(line, col, "expected `&&`, found a single `&`")),
                ('\u{201c}' | '\u{201d}' | '\u{2018}' | '\u{2019}', _) => {
                    return Err(syntax(
                        line,
                        col,
                        format!(
                            "unexpected typographic quote `{c}`: string literals use ASCII `\"`"
                        ),
                    ));
                }
                _ => {
                    return Err(syntax(
                        line,
                        col,
                        format!("unexpected character `{}`", c.escape_debug()),
                    ));
                }
            };
            Kind::Punct(p)
        };
        Ok(tok(kind, self.offset))
    }

    fn digits(&mut self, s: &mut String) {
        while let Some(d) = self.peek().filter(char::is_ascii_digit) {
            s.push(d);
            self.bump();
        }
    }

    /// A string literal; the opening quote is next.
    fn string(&mut self, line: usize, col: usize) -> Result<String, ParseError> {
        self.bump();
        let mut s = String::new();
        loop {
            let (eline, ecol) = (self.line, self.col);
            let c = match self.bump() {
                None | Some('\n') => {
                    return Err(syntax(line, col, "unterminated string literal"));
                }
                Some('"') => return Ok(s),
                Some('\\') => match self.bump() {
                    Some(e @ ('"' | '\\')) => e,
                    Some(e) => {
                        return Err(syntax(
                            eline,
                            ecol,
                            format!(
                                "unsupported escape `\\{}` (only `\\\"` and `\\\\`)",
                                e.escape_debug()
                            ),
                        ));
                    }
                    None => return Err(syntax(line, col, "unterminated string literal")),
                },
                Some(c) => c,
            };
            if s.len().saturating_add(c.len_utf8()) > MAX_STRING_BYTES {
                return Err(ParseError::Limit {
                    line,
                    column: col,
                    what: "bytes in a string literal",
                    max: MAX_STRING_BYTES,
                });
            }
            s.push(c);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parser

struct Parser<'a> {
    text: &'a str,
    toks: Vec<Tok>,
    pos: usize,
    eof: Tok,
    version: (u8, u8),
    rules: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Result<Self, ParseError> {
        let mut lx = Lexer::new(text);
        let mut toks = Vec::new();
        loop {
            let t = lx.next_token()?;
            if t.kind == Kind::Eof {
                return Ok(Self {
                    text,
                    toks,
                    pos: 0,
                    eof: t,
                    version: (1, 0),
                    rules: 0,
                });
            }
            toks.push(t);
        }
    }

    fn peek(&self) -> &Tok {
        self.toks.get(self.pos).unwrap_or(&self.eof)
    }

    fn peek_at(&self, ahead: usize) -> &Tok {
        self.toks
            .get(self.pos.saturating_add(ahead))
            .unwrap_or(&self.eof)
    }

    fn bump(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.pos < self.toks.len() {
            self.pos = self.pos.saturating_add(1);
        }
        t
    }

    fn err_here(&self, message: impl Into<String>) -> ParseError {
        let t = self.peek();
        syntax(t.line, t.col, message)
    }

    fn expected(&self, what: &str) -> ParseError {
        self.err_here(format!(
            "expected {what}, found {}",
            describe(&self.peek().kind)
        ))
    }

    fn at(&self, p: P) -> bool {
        self.peek().kind == Kind::Punct(p)
    }

    fn at_kw(&self, kw: &str) -> bool {
        matches!(&self.peek().kind, Kind::Ident(s) if s.eq_ignore_ascii_case(kw))
    }

    fn expect(&mut self, p: P, what: &str) -> Result<Tok, ParseError> {
        if self.at(p) {
            Ok(self.bump())
        } else {
            Err(self.expected(what))
        }
    }

    fn policy(mut self) -> Result<MaaPolicy, ParseError> {
        if !self.at_kw("version") {
            return Err(self.expected("`version`"));
        }
        self.bump();
        self.expect(P::Assign, "`=`")?;
        self.version = self.version_number()?;
        self.expect(P::Semi, "`;` after the version")?;
        let mut configuration = Vec::new();
        if self.at_kw("configurationrules") {
            if self.version < (1, 1) {
                return Err(self.err_here("`configurationrules` needs policy version 1.1 or later"));
            }
            configuration = self.section(Section::Configuration)?;
        }
        if !self.at_kw("authorizationrules") {
            return Err(self.expected(if self.version < (1, 1) {
                "`authorizationrules`"
            } else {
                "`configurationrules` or `authorizationrules`"
            }));
        }
        let authorization = self.section(Section::Authorization)?;
        let issuance = if self.at_kw("issuancerules") {
            self.section(Section::Issuance)?
        } else {
            Vec::new()
        };
        if self.peek().kind != Kind::Eof {
            let sections = ["configurationrules", "authorizationrules", "issuancerules"];
            if sections.iter().any(|s| self.at_kw(s)) {
                return Err(self.err_here(format!(
                    "{} is repeated or out of order (order: configurationrules, \
                     authorizationrules, issuancerules)",
                    describe(&self.peek().kind)
                )));
            }
            return Err(self.expected("`issuancerules` or end of policy"));
        }
        Ok(MaaPolicy {
            version: self.version,
            configuration,
            authorization,
            issuance,
        })
    }

    fn version_number(&mut self) -> Result<(u8, u8), ParseError> {
        let t = self.peek().clone();
        let Kind::Num(n) = &t.kind else {
            return Err(self.expected("a version number such as `1.0`"));
        };
        let v = match n.as_str() {
            "1.0" => (1, 0),
            "1.1" => (1, 1),
            "1.2" => (1, 2),
            _ => {
                return Err(syntax(
                    t.line,
                    t.col,
                    format!("unsupported policy version {n} (supported: 1.0, 1.1, 1.2)"),
                ));
            }
        };
        self.bump();
        Ok(v)
    }

    fn section(&mut self, sec: Section) -> Result<Vec<Rule>, ParseError> {
        self.bump();
        self.expect(P::LBrace, &format!("`{{` after `{sec}`"))?;
        let mut rules = Vec::new();
        while !self.at(P::RBrace) {
            if self.peek().kind == Kind::Eof {
                return Err(self.expected(&format!("a rule or `}}` closing `{sec}`")));
            }
            rules.push(self.rule(sec)?);
        }
        self.bump();
        self.expect(P::Semi, &format!("`;` after the `}}` of `{sec}`"))?;
        Ok(rules)
    }

    fn rule(&mut self, sec: Section) -> Result<Rule, ParseError> {
        let first = self.peek().clone();
        if self.rules >= MAX_RULES {
            return Err(ParseError::Limit {
                line: first.line,
                column: first.col,
                what: "rules",
                max: MAX_RULES,
            });
        }
        self.rules = self.rules.saturating_add(1);
        let mut conditions = Vec::new();
        let mut names: Vec<Option<String>> = Vec::new();
        if !self.at(P::Arrow) {
            loop {
                if conditions.len() >= MAX_CONDITIONS {
                    let t = self.peek();
                    return Err(ParseError::Limit {
                        line: t.line,
                        column: t.col,
                        what: "conditions in a rule",
                        max: MAX_CONDITIONS,
                    });
                }
                let (cond, name) = self.condition(&names)?;
                conditions.push(cond);
                names.push(name);
                if self.at(P::AndAnd) {
                    self.bump();
                } else {
                    break;
                }
            }
        }
        if !self.at(P::Arrow) {
            return Err(self.expected(if conditions.is_empty() {
                "a condition `[…]` or `=>`"
            } else {
                "`&&` or `=>`"
            }));
        }
        self.bump();
        let action = self.action(sec, &names)?;
        let last = self.expect(P::Semi, "`;` after the rule")?;
        let source = self
            .text
            .get(first.start..last.end)
            .unwrap_or_default()
            .trim()
            .to_owned();
        Ok(Rule {
            conditions,
            action,
            source,
        })
    }

    fn condition(
        &mut self,
        names: &[Option<String>],
    ) -> Result<(Condition, Option<String>), ParseError> {
        let negated = self.at(P::Bang);
        if negated {
            if self.version < (1, 2) {
                return Err(self.err_here("the `!` condition operator needs policy version 1.2"));
            }
            self.bump();
        }
        let mut name = None;
        if let Kind::Ident(id) = &self.peek().kind
            && self.peek_at(1).kind == Kind::Punct(P::Colon)
        {
            let id = id.clone();
            if negated {
                return Err(self.err_here("a negated condition cannot bind an identifier"));
            }
            if names.iter().flatten().any(|n| *n == id) {
                return Err(
                    self.err_here(format!("identifier `{id}` is already bound in this rule"))
                );
            }
            self.bump();
            self.bump();
            name = Some(id);
        }
        if !self.at(P::LBracket) {
            return Err(self.expected(if name.is_some() || negated {
                "`[`"
            } else {
                "a condition `[…]`, `id:[…]` or `=>`"
            }));
        }
        self.bump();
        let mut props = Vec::new();
        loop {
            props.push(self.prop_cond(names)?);
            if self.at(P::Comma) {
                self.bump();
            } else if self.at(P::RBracket) {
                self.bump();
                break;
            } else {
                return Err(self.expected("`,` or `]`"));
            }
        }
        Ok((
            Condition {
                negated,
                binds: name.is_some(),
                props,
            },
            name,
        ))
    }

    fn property(&mut self) -> Result<Prop, ParseError> {
        let p = if self.at_kw("type") {
            Prop::Type
        } else if self.at_kw("value") {
            Prop::Value
        } else if self.at_kw("issuer") {
            Prop::Issuer
        } else if self.at_kw("valueType") {
            Prop::ValueType
        } else {
            return Err(self.expected("a claim property (`type`, `value`, `issuer`, `valueType`)"));
        };
        self.bump();
        Ok(p)
    }

    fn prop_cond(&mut self, names: &[Option<String>]) -> Result<PropCond, ParseError> {
        let prop = self.property()?;
        let op_tok = self.peek().clone();
        let op = match op_tok.kind {
            Kind::Punct(P::EqEq) => Op::Eq,
            Kind::Punct(P::NotEq) => Op::Ne,
            Kind::Punct(P::Lt) => Op::Lt,
            Kind::Punct(P::Le) => Op::Le,
            Kind::Punct(P::Gt) => Op::Gt,
            Kind::Punct(P::Ge) => Op::Ge,
            Kind::Punct(P::Assign) => {
                return Err(self.err_here(
                    "expected a comparison operator (`==`, `!=`, `<`, `<=`, `>`, `>=`), found `=` \
                     (conditions compare with `==`)",
                ));
            }
            _ => {
                return Err(
                    self.expected("a comparison operator (`==`, `!=`, `<`, `<=`, `>`, `>=`)")
                );
            }
        };
        self.bump();
        let rhs_tok = self.peek().clone();
        let rhs = self.operand(names)?;
        let ordering = !matches!(op, Op::Eq | Op::Ne);
        if ordering && prop != Prop::Value {
            return Err(syntax(
                op_tok.line,
                op_tok.col,
                "`<`, `<=`, `>`, `>=` apply to `value` only",
            ));
        }
        if let Operand::Lit(lit) = &rhs {
            if ordering && !matches!(lit, ClaimValue::Int(_)) {
                return Err(syntax(
                    rhs_tok.line,
                    rhs_tok.col,
                    "expected an integer after an ordering operator",
                ));
            }
            if prop != Prop::Value && !matches!(lit, ClaimValue::Str(_)) {
                return Err(syntax(
                    rhs_tok.line,
                    rhs_tok.col,
                    "expected a string: `type`, `issuer` and `valueType` are strings",
                ));
            }
        }
        Ok(PropCond { prop, op, rhs })
    }

    fn resolve(&self, names: &[Option<String>], id: &str) -> Option<usize> {
        names.iter().position(|n| n.as_deref() == Some(id))
    }

    fn operand(&mut self, names: &[Option<String>]) -> Result<Operand, ParseError> {
        let t = self.peek().clone();
        match &t.kind {
            Kind::Str(s) => {
                self.bump();
                Ok(Operand::Lit(ClaimValue::Str(s.clone())))
            }
            Kind::Num(n) => {
                if n.contains('.') {
                    return Err(ParseError::Unsupported {
                        line: t.line,
                        column: t.col,
                        feature: format!("the fractional number {n} (integers only)"),
                    });
                }
                let v = n.parse::<i64>().map_err(|_| {
                    syntax(
                        t.line,
                        t.col,
                        format!("integer {n} does not fit in 64 bits"),
                    )
                })?;
                self.bump();
                Ok(Operand::Lit(ClaimValue::Int(v)))
            }
            Kind::Ident(id) => {
                let next = self.peek_at(1).kind.clone();
                if next == Kind::Punct(P::LParen) {
                    return Err(ParseError::Unsupported {
                        line: t.line,
                        column: t.col,
                        feature: format!(
                            "the function call `{id}(…)` (policy version 1.2 functions)"
                        ),
                    });
                }
                if next == Kind::Punct(P::Dot) {
                    let Some(slot) = self.resolve(names, id) else {
                        return Err(syntax(
                            t.line,
                            t.col,
                            format!(
                                "identifier `{id}` is not bound by an earlier condition of this rule"
                            ),
                        ));
                    };
                    self.bump();
                    self.bump();
                    let prop = self.property()?;
                    return Ok(Operand::Ref { slot, prop });
                }
                let v = if id.eq_ignore_ascii_case("true") {
                    true
                } else if id.eq_ignore_ascii_case("false") {
                    false
                } else {
                    return Err(self.expected(
                        "a value (a string, an integer, `true`, `false` or `id.property`)",
                    ));
                };
                self.bump();
                Ok(Operand::Lit(ClaimValue::Bool(v)))
            }
            _ => {
                Err(self
                    .expected("a value (a string, an integer, `true`, `false` or `id.property`)"))
            }
        }
    }

    fn action(&mut self, sec: Section, names: &[Option<String>]) -> Result<Action, ParseError> {
        let t = self.peek().clone();
        let verb = match &t.kind {
            Kind::Ident(v) => v.to_ascii_lowercase(),
            _ => String::new(),
        };
        let allowed: &[&str] = match sec {
            Section::Configuration => &["issueproperty"],
            Section::Authorization => &["permit", "deny", "add"],
            Section::Issuance => &["add", "issue", "issueproperty"],
        };
        if !allowed.contains(&verb.as_str()) {
            let known = ["permit", "deny", "add", "issue", "issueproperty"];
            let list = allowed.join("`, `");
            return Err(if known.contains(&verb.as_str()) {
                syntax(
                    t.line,
                    t.col,
                    format!("`{verb}` is not allowed in {sec} (allowed: `{list}`)"),
                )
            } else {
                self.expected(&format!("an action (`{list}`)"))
            });
        }
        self.bump();
        self.expect(P::LParen, &format!("`(` after `{verb}`"))?;
        match verb.as_str() {
            "permit" | "deny" => {
                self.expect(P::RParen, &format!("`)`: `{verb}()` takes no arguments"))?;
                Ok(if verb == "permit" {
                    Action::Permit
                } else {
                    Action::Deny
                })
            }
            "add" => Ok(Action::Add(self.claim_spec(names)?)),
            "issue" => Ok(Action::Issue(self.claim_spec(names)?)),
            _ => Ok(Action::IssueProperty(self.claim_spec(names)?)),
        }
    }

    /// `claim=id)` or `type=…, value=…)`; the `(` is consumed.
    fn claim_spec(&mut self, names: &[Option<String>]) -> Result<ClaimSpec, ParseError> {
        if self.at_kw("claim") {
            self.bump();
            self.expect(P::Assign, "`=` after `claim`")?;
            let t = self.peek().clone();
            let Kind::Ident(id) = &t.kind else {
                return Err(self.expected("an identifier bound by a condition"));
            };
            let Some(slot) = self.resolve(names, id) else {
                return Err(syntax(
                    t.line,
                    t.col,
                    format!("identifier `{id}` is not bound by a condition of this rule"),
                ));
            };
            self.bump();
            self.expect(P::RParen, "`)`")?;
            return Ok(ClaimSpec::Copy(slot));
        }
        let (mut ty, mut value) = (None, None);
        loop {
            let is_type = self.at_kw("type");
            if !is_type && !self.at_kw("value") {
                return Err(self.expected("`type=`, `value=` or `claim=`"));
            }
            let name_tok = self.bump();
            if (is_type && ty.is_some()) || (!is_type && value.is_some()) {
                return Err(syntax(
                    name_tok.line,
                    name_tok.col,
                    format!("{} is given twice", describe(&name_tok.kind)),
                ));
            }
            self.expect(P::Assign, "`=`")?;
            let op_tok = self.peek().clone();
            let operand = self.operand(names)?;
            if is_type {
                if matches!(
                    operand,
                    Operand::Lit(ClaimValue::Int(_) | ClaimValue::Bool(_))
                ) {
                    return Err(syntax(
                        op_tok.line,
                        op_tok.col,
                        "expected a string: a claim type is a string",
                    ));
                }
                ty = Some(operand);
            } else {
                value = Some(operand);
            }
            if self.at(P::Comma) {
                self.bump();
            } else {
                break;
            }
        }
        let (Some(ty), Some(value)) = (ty, value) else {
            return Err(self.expected("`,` and the missing `type=` or `value=` argument"));
        };
        self.expect(P::RParen, "`)`")?;
        Ok(ClaimSpec::New { ty, value })
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation

/// An evaluation bound that was hit.
struct Limit(&'static str);

struct Eval {
    claims: Vec<Claim>,
    added: usize,
    added_bytes: usize,
    steps: u64,
    outcome: MaaOutcome,
}

enum Fired {
    None,
    Permit,
    Deny,
    Other,
}

/// Inserts a value, turning a repeated type into an array of its values.
fn insert_multi(map: &mut Map<String, Value>, ty: &str, v: Value) {
    match map.get_mut(ty) {
        None => {
            map.insert(ty.to_owned(), v);
        }
        Some(Value::Array(a)) => a.push(v),
        Some(old) => {
            let first = old.take();
            *old = Value::Array(vec![first, v]);
        }
    }
}

fn incoming_claims(incoming: &Map<String, Value>) -> Vec<Claim> {
    let mut out = Vec::new();
    let mut push = |ty: &str, v: &Value| {
        if let Some(value) = ClaimValue::from_json(v) {
            out.push(Claim {
                ty: ty.to_owned(),
                value,
                issuer: SERVICE,
            });
        }
    };
    for (k, v) in incoming {
        match v {
            Value::Array(items) => items.iter().for_each(|i| push(k, i)),
            v => push(k, v),
        }
    }
    for (dollar, short, long) in LEGACY {
        if incoming.contains_key(dollar) {
            continue;
        }
        if let Some(v) = incoming.get(short).or_else(|| incoming.get(long)) {
            push(dollar, v);
        }
    }
    out
}

struct Search<'a> {
    conds: &'a [Condition],
    claims: &'a [Claim],
    steps: &'a mut u64,
    all: bool,
    out: Vec<Vec<Option<usize>>>,
}

impl Search<'_> {
    /// Whether `claim` satisfies `cond`, counting the cost of the comparisons made (see
    /// [`MAX_STEPS`]).
    fn satisfies(
        &mut self,
        cond: &Condition,
        claim: &Claim,
        binding: &[Option<usize>],
    ) -> Result<bool, Limit> {
        let mut cost = 0u64;
        let ok = cond.props.iter().all(|pc| {
            let rhs = match &pc.rhs {
                Operand::Lit(v) => Some(v.as_ref()),
                Operand::Ref { slot, prop } => binding
                    .get(*slot)
                    .copied()
                    .flatten()
                    .and_then(|i| self.claims.get(i))
                    .map(|c| c.prop(*prop)),
            };
            let lhs = claim.prop(pc.prop);
            cost = cost.saturating_add(compare_cost(lhs, rhs));
            rhs.is_some_and(|rhs| compare(lhs, pc.op, rhs))
        });
        *self.steps = self.steps.saturating_add(cost);
        if *self.steps > MAX_STEPS {
            return Err(Limit("evaluation steps"));
        }
        Ok(ok)
    }

    /// Matches conditions `i..` under `binding`; `Ok(true)` stops the search.
    fn go(&mut self, i: usize, binding: &mut Vec<Option<usize>>) -> Result<bool, Limit> {
        let Some(cond) = self.conds.get(i) else {
            if self.out.len() >= MAX_BINDINGS {
                return Err(Limit("claim combinations per rule"));
            }
            self.out.push(binding.clone());
            return Ok(!self.all);
        };
        let next = i.saturating_add(1);
        let claims = self.claims;
        if cond.binds {
            for (idx, claim) in claims.iter().enumerate() {
                if self.satisfies(cond, claim, binding)? {
                    if let Some(b) = binding.get_mut(i) {
                        *b = Some(idx);
                    }
                    if self.go(next, binding)? {
                        return Ok(true);
                    }
                }
            }
            if let Some(b) = binding.get_mut(i) {
                *b = None;
            }
            return Ok(false);
        }
        let mut found = false;
        for claim in claims {
            if self.satisfies(cond, claim, binding)? {
                found = true;
                break;
            }
        }
        if found == cond.negated {
            return Ok(false);
        }
        self.go(next, binding)
    }
}

impl Eval {
    fn operand(&self, o: &Operand, binding: &[Option<usize>]) -> Option<ClaimValue> {
        match o {
            Operand::Lit(v) => Some(v.clone()),
            Operand::Ref { slot, prop } => binding
                .get(*slot)
                .copied()
                .flatten()
                .and_then(|i| self.claims.get(i))
                .map(|c| c.prop(*prop).to_owned_value()),
        }
    }

    fn build(&self, spec: &ClaimSpec, binding: &[Option<usize>]) -> Option<(String, ClaimValue)> {
        match spec {
            ClaimSpec::Copy(slot) => binding
                .get(*slot)
                .copied()
                .flatten()
                .and_then(|i| self.claims.get(i))
                .map(|c| (c.ty.clone(), c.value.clone())),
            ClaimSpec::New { ty, value } => match self.operand(ty, binding)? {
                // A claim type must be a string: a reference to a non-string issues nothing.
                ClaimValue::Str(t) => Some((t, self.operand(value, binding)?)),
                _ => None,
            },
        }
    }

    fn run(&mut self, rule: &Rule) -> Result<Fired, Limit> {
        let all = matches!(
            rule.action,
            Action::Add(_) | Action::Issue(_) | Action::IssueProperty(_)
        );
        let mut search = Search {
            conds: &rule.conditions,
            claims: &self.claims,
            steps: &mut self.steps,
            all,
            out: Vec::new(),
        };
        let mut binding = vec![None; rule.conditions.len()];
        search.go(0, &mut binding)?;
        let bindings = search.out;
        if bindings.is_empty() {
            return Ok(Fired::None);
        }
        let spec = match &rule.action {
            Action::Permit => return Ok(Fired::Permit),
            Action::Deny => return Ok(Fired::Deny),
            Action::Add(s) | Action::Issue(s) | Action::IssueProperty(s) => s,
        };
        let new: Vec<(String, ClaimValue)> = bindings
            .iter()
            .filter_map(|b| self.build(spec, b))
            .collect();
        for (ty, value) in new {
            if self.added >= MAX_ADDED_CLAIMS {
                return Err(Limit("claims added by the policy"));
            }
            self.added = self.added.saturating_add(1);
            self.added_bytes = self
                .added_bytes
                .saturating_add(ty.len())
                .saturating_add(value.byte_len());
            if self.added_bytes > MAX_ADDED_BYTES {
                return Err(Limit("bytes of claims added by the policy"));
            }
            match &rule.action {
                Action::Issue(_) => insert_multi(&mut self.outcome.claims, &ty, value.to_json()),
                Action::IssueProperty(_) => {
                    insert_multi(&mut self.outcome.properties, &ty, value.to_json());
                }
                _ => {}
            }
            self.claims.push(Claim {
                ty,
                value,
                issuer: POLICY,
            });
        }
        Ok(Fired::Other)
    }
}

impl MaaPolicy {
    /// Parses a policy (see the module docs for the grammar and its bounds).
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        if text.len() > MAX_POLICY_BYTES {
            return Err(ParseError::TooLarge {
                len: text.len(),
                max: MAX_POLICY_BYTES,
            });
        }
        let policy = Parser::new(text)?.policy()?;
        policy.check_known_claims()?;
        Ok(policy)
    }

    /// Rejects conditions that compare a claim the service issues with a literal that none of
    /// its values can equal (`value=="true"` for a boolean, `value=="1"` for an integer,
    /// upper-case hex for a measurement): such a condition is always false, which would make a
    /// `deny()` rule a silent no-op.
    fn check_known_claims(&self) -> Result<(), ParseError> {
        let rules = self
            .configuration
            .iter()
            .chain(&self.authorization)
            .chain(&self.issuance);
        for cond in rules.flat_map(|r| &r.conditions) {
            let Some(claim) = cond
                .props
                .iter()
                .find_map(|pc| match (&pc.prop, &pc.op, &pc.rhs) {
                    (Prop::Type, Op::Eq, Operand::Lit(ClaimValue::Str(t))) => Some(t.as_str()),
                    _ => None,
                })
            else {
                continue;
            };
            let Some(form) = known_claim_form(claim) else {
                continue;
            };
            for pc in &cond.props {
                let (Prop::Value, Operand::Lit(v)) = (&pc.prop, &pc.rhs) else {
                    continue;
                };
                let fits = match (form, v) {
                    (ClaimForm::Bool, ClaimValue::Bool(_))
                    | (ClaimForm::Int, ClaimValue::Int(_)) => true,
                    (ClaimForm::LowerHex, ClaimValue::Str(h)) => h
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                    _ => false,
                };
                if !fits {
                    return Err(ParseError::ClaimType {
                        claim: claim.to_owned(),
                        expected: form.describe(),
                        found: v.to_json().to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The policy's `version` as (major, minor).
    #[must_use]
    pub fn version(&self) -> (u8, u8) {
        self.version
    }

    /// Evaluates the policy over the token's claim object (see the module docs): the issued
    /// claims and properties when permitted, else the reason for the denial.
    pub fn evaluate(&self, incoming: &Map<String, Value>) -> Result<MaaOutcome, MaaDeny> {
        let mut ev = Eval {
            claims: incoming_claims(incoming),
            added: 0,
            added_bytes: 0,
            steps: 0,
            outcome: MaaOutcome::default(),
        };
        let limit = |section, index: usize, rule: &Rule, Limit(what)| MaaDeny::LimitExceeded {
            section,
            index: index.saturating_add(1),
            rule: rule.source.clone(),
            limit: what,
        };
        for (i, rule) in self.configuration.iter().enumerate() {
            ev.run(rule)
                .map_err(|l| limit(Section::Configuration, i, rule, l))?;
        }
        let mut permitted = false;
        for (i, rule) in self.authorization.iter().enumerate() {
            match ev
                .run(rule)
                .map_err(|l| limit(Section::Authorization, i, rule, l))?
            {
                Fired::Permit => permitted = true,
                Fired::Deny => {
                    return Err(MaaDeny::Denied {
                        index: i.saturating_add(1),
                        rule: rule.source.clone(),
                    });
                }
                Fired::None | Fired::Other => {}
            }
        }
        if !permitted {
            return Err(MaaDeny::NoPermit);
        }
        for (i, rule) in self.issuance.iter().enumerate() {
            ev.run(rule)
                .map_err(|l| limit(Section::Issuance, i, rule, l))?;
        }
        Ok(ev.outcome)
    }
}

/// The form of the values of a claim the service issues, where it is not a plain string.
#[derive(Clone, Copy)]
enum ClaimForm {
    Bool,
    Int,
    LowerHex,
}

impl ClaimForm {
    fn describe(self) -> &'static str {
        match self {
            Self::Bool => "a boolean (true/false, unquoted)",
            Self::Int => "an integer (unquoted)",
            Self::LowerHex => "lower-case hex",
        }
    }
}

fn known_claim_form(claim: &str) -> Option<ClaimForm> {
    Some(match claim {
        "x-ms-sgx-is-debuggable" | "is-debuggable" | "$is-debuggable" => ClaimForm::Bool,
        "x-ms-sgx-product-id"
        | "product-id"
        | "$product-id"
        | "x-ms-sgx-svn"
        | "svn"
        | "$svn"
        | "x-confcom-collateral-valid-until"
        | "iat"
        | "nbf"
        | "exp" => ClaimForm::Int,
        "x-ms-sgx-mrenclave"
        | "x-ms-sgx-mrsigner"
        | "sgx-mrenclave"
        | "sgx-mrsigner"
        | "$sgx-mrenclave"
        | "$sgx-mrsigner"
        | "x-ms-sgx-report-data"
        | "x-ms-sgx-config-id" => ClaimForm::LowerHex,
        _ => return None,
    })
}

/// Whether `text` starts (after whitespace and comments) with `version` `=`: tells an MAA
/// policy from the YAML/JSON policy of [`crate::policy`].
#[must_use]
pub fn looks_like_maa(text: &str) -> bool {
    let mut lx = Lexer::new(text);
    let mut kinds = [Kind::Eof, Kind::Eof];
    for k in &mut kinds {
        match lx.next_token() {
            Ok(t) => *k = t.kind,
            Err(_) => return false,
        }
    }
    matches!(&kinds, [Kind::Ident(v), Kind::Punct(P::Assign)] if v.eq_ignore_ascii_case("version"))
}

/// The claims the fuzz entry point evaluates parsed policies against (also the corpus
/// replay's; not a stable API).
#[doc(hidden)]
#[must_use]
pub fn fuzz_claims() -> Map<String, Value> {
    let v = serde_json::json!({
        "x-ms-ver": "1.0",
        "x-ms-attestation-type": "sgx",
        "x-ms-sgx-is-debuggable": false,
        "x-ms-sgx-mrsigner": "83d719e77deaca1470f6baf62a4d774303c899db69020f9c70ee1dfc08c7ce9e",
        "x-ms-sgx-mrenclave": "5f1b7ea7b5c6a3e4d2c1b0a99887766554433221100ffeeddccbbaa998877665",
        "x-ms-sgx-product-id": 1,
        "x-ms-sgx-svn": 3,
        "x-ms-sgx-report-data": "00",
        "x-confcom-advisory-ids": ["INTEL-SA-00615", "INTEL-SA-00657"],
        "is-debuggable": false,
        "product-id": 1,
        "svn": 3,
        "tee": "sgx",
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Fuzz entry point (`fuzz/fuzz_targets/maa_policy.rs`, not a stable API): parses the input as
/// UTF-8 policy text and evaluates what parses against fixed claims. Panics if a parsed policy
/// is not recognised by [`looks_like_maa`] or evaluates differently twice.
#[doc(hidden)]
pub fn fuzz_entry(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let looks = looks_like_maa(text);
    let Ok(policy) = MaaPolicy::parse(text) else {
        return;
    };
    assert!(looks, "a parsed policy must look like MAA");
    let claims = fuzz_claims();
    let first = policy.evaluate(&claims);
    assert_eq!(
        first,
        policy.evaluate(&claims),
        "evaluation is deterministic"
    );
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::panic)]
mod tests {
    use serde_json::json;

    use super::*;

    fn claims() -> Map<String, Value> {
        fuzz_claims()
    }

    fn eval(policy: &str) -> Result<MaaOutcome, MaaDeny> {
        MaaPolicy::parse(policy)
            .unwrap_or_else(|e| panic!("{e}\n{policy}"))
            .evaluate(&claims())
    }

    fn permits(auth: &str) -> bool {
        let p = format!("version=1.0; authorizationrules {{ {auth} }};");
        match eval(&p) {
            Ok(_) => true,
            Err(MaaDeny::NoPermit) => false,
            Err(e) => panic!("{e}"),
        }
    }

    fn parse_err(text: &str) -> ParseError {
        match MaaPolicy::parse(text) {
            Ok(p) => panic!("parsed: {p:?}\n{text}"),
            Err(e) => e,
        }
    }

    const SGX_CUSTOM: &str = r#"
        version= 1.0;
        authorizationrules
        {
            [ type=="x-ms-sgx-is-debuggable", value==false ]
                && [ type=="x-ms-sgx-product-id", value==1 ]
                && [ type=="x-ms-sgx-svn", value>= 2 ]
                && [ type=="x-ms-sgx-mrsigner",
                     value=="83d719e77deaca1470f6baf62a4d774303c899db69020f9c70ee1dfc08c7ce9e" ]
                => permit();
        };
        issuancerules {
            c:[type=="x-ms-sgx-mrsigner"] => issue(type="enclave-signer", value=c.value);
        };
    "#;

    #[test]
    fn custom_sgx_policy_permits_and_issues() {
        let out = eval(SGX_CUSTOM).unwrap();
        assert_eq!(
            Value::Object(out.claims),
            json!({"enclave-signer": "83d719e77deaca1470f6baf62a4d774303c899db69020f9c70ee1dfc08c7ce9e"})
        );
        assert!(out.properties.is_empty());
        let p = MaaPolicy::parse(SGX_CUSTOM).unwrap();
        assert_eq!(p.version(), (1, 0));
        for (k, v) in [
            ("x-ms-sgx-is-debuggable", json!(true)),
            ("x-ms-sgx-svn", json!(1)),
            ("x-ms-sgx-product-id", json!(2)),
            ("x-ms-sgx-mrsigner", json!("00")),
            ("x-ms-sgx-svn", json!("3")),
        ] {
            let mut c = claims();
            c.insert(k.into(), v.clone());
            assert_eq!(p.evaluate(&c), Err(MaaDeny::NoPermit), "{k}={v}");
        }
        let mut c = claims();
        c.remove("x-ms-sgx-svn");
        assert_eq!(p.evaluate(&c), Err(MaaDeny::NoPermit));
    }

    #[test]
    fn default_sgx_policy_v1_1_with_configuration_rules() {
        let policy = r#"version= 1.1;
            configurationrules{
                => issueproperty(type="x-ms-sgx-tcbidentifier", value="azuredefault");
            };
            authorizationrules{ => permit(); };
            issuancerules{
                c:[type=="x-ms-sgx-is-debuggable"] => issue(type="is-debuggable", value=c.value);
                c:[type=="x-ms-sgx-mrsigner"] => issue(type="sgx-mrsigner", value=c.value);
                c:[type=="x-ms-sgx-product-id"] => issue(type="product-id", value=c.value);
                c:[type=="x-ms-sgx-svn"] => issue(type="svn", value=c.value);
                c:[type=="x-ms-attestation-type"] => issue(type="tee", value=c.value);
            };"#;
        let out = eval(policy).unwrap();
        assert_eq!(
            Value::Object(out.properties),
            json!({"x-ms-sgx-tcbidentifier": "azuredefault"})
        );
        let c = claims();
        assert_eq!(out.claims["is-debuggable"], json!(false));
        assert_eq!(out.claims["sgx-mrsigner"], c["x-ms-sgx-mrsigner"]);
        assert_eq!(out.claims["product-id"], json!(1));
        assert_eq!(out.claims["svn"], json!(3));
        assert_eq!(out.claims["tee"], json!("sgx"));
        assert_eq!(out.claims.len(), 5);
    }

    #[test]
    fn legacy_dollar_names_v1_0_default_policy() {
        let policy = r#"version= 1.0;authorizationrules{c:[type=="$is-debuggable"] => permit();};
            issuancerules{c:[type=="$is-debuggable"] => issue(type="is-debuggable", value=c.value);
            c:[type=="$sgx-mrenclave"] => issue(type="sgx-mrenclave", value=c.value);
            c:[type=="$svn"] => issue(type="svn", value=c.value);
            c:[type=="$tee"] => issue(type="tee", value=c.value);};"#;
        let out = eval(policy).unwrap();
        assert_eq!(out.claims["is-debuggable"], json!(false));
        // No short `sgx-mrenclave` claim: taken from `x-ms-sgx-mrenclave`.
        assert_eq!(out.claims["sgx-mrenclave"], claims()["x-ms-sgx-mrenclave"]);
        assert_eq!(out.claims["svn"], json!(3));
        assert_eq!(out.claims["tee"], json!("sgx"));
        // Without any debuggable claim there is nothing to permit on.
        let p = MaaPolicy::parse(policy).unwrap();
        let mut c = claims();
        c.remove("is-debuggable");
        c.remove("x-ms-sgx-is-debuggable");
        assert_eq!(p.evaluate(&c), Err(MaaDeny::NoPermit));
    }

    #[test]
    fn integer_operators() {
        // x-ms-sgx-svn is 3.
        for (op, rhs, want) in [
            ("==", 3, true),
            ("==", 4, false),
            ("!=", 4, true),
            ("!=", 3, false),
            ("<", 4, true),
            ("<", 3, false),
            ("<=", 3, true),
            ("<=", 2, false),
            (">", 2, true),
            (">", 3, false),
            (">=", 3, true),
            (">=", 4, false),
            (">=", -1, true),
        ] {
            let rule = format!("[type==\"x-ms-sgx-svn\", value {op} {rhs}] => permit();");
            assert_eq!(permits(&rule), want, "{rule}");
        }
    }

    #[test]
    fn string_and_bool_operators() {
        for (cond, want) in [
            (r#"type=="x-ms-attestation-type", value=="sgx""#, true),
            (r#"type=="x-ms-attestation-type", value=="SGX""#, false),
            (r#"type=="x-ms-attestation-type", value!="tdx""#, true),
            (r#"type=="x-ms-attestation-type", value!="sgx""#, false),
            (r#"type=="x-ms-sgx-is-debuggable", value==false"#, true),
            (r#"type=="x-ms-sgx-is-debuggable", value==true"#, false),
            (r#"type=="x-ms-sgx-is-debuggable", value!=true"#, true),
            (r#"type=="x-ms-sgx-is-debuggable", value!=FALSE"#, false),
            (r#"type!="x-ms-sgx-svn", type=="svn""#, true),
            (r#"issuer=="AttestationService", type=="svn""#, true),
            (r#"issuer=="CustomClaim", type=="svn""#, false),
            (r#"valueType=="Integer", type=="svn""#, true),
            (r#"valueType=="String", type=="svn""#, false),
        ] {
            let rule = format!("[{cond}] => permit();");
            assert_eq!(permits(&rule), want, "{rule}");
        }
    }

    #[test]
    fn known_claims_are_type_checked_and_other_mismatches_compare_false() {
        // Claims the service issues: a literal no value can equal is refused when the policy is
        // parsed, so a deny() behind it cannot silently never fire.
        for cond in [
            r#"type=="x-ms-sgx-svn", value=="3""#,
            r#"type=="x-ms-sgx-svn", value!="3""#,
            r#"type=="x-ms-sgx-svn", value==true"#,
            r#"type=="x-ms-sgx-is-debuggable", value==0"#,
            r#"type=="x-ms-sgx-is-debuggable", value=="true""#,
            r#"type=="x-ms-sgx-product-id", value!="1""#,
            r#"type=="$svn", value=="3""#,
            r#"type=="x-ms-sgx-mrsigner", value=="83D719E77DEACA1470F6BAF62A4D774303C899DB69020F9C70EE1DFC08C7CE9E""#,
            r#"type=="sgx-mrenclave", value==1"#,
        ] {
            let text =
                format!("version=1.0; authorizationrules {{ [{cond}] => deny(); => permit(); }};");
            let err = parse_err(&text);
            assert!(matches!(err, ParseError::ClaimType { .. }), "{err}: {text}");
        }
        assert_eq!(
            parse_err(r#"version=1.0; authorizationrules { [type=="x-ms-sgx-svn", value=="3"] => permit(); };"#)
                .to_string(),
            r#"a condition on x-ms-sgx-svn compares it with "3", but x-ms-sgx-svn is an integer (unquoted)"#
        );
        // The right forms parse, and references are not literals.
        assert!(permits(
            r#"[type=="x-ms-sgx-is-debuggable", value==false] && [type=="x-ms-sgx-svn", value>=3]
               && [type=="x-ms-sgx-mrsigner", value=="83d719e77deaca1470f6baf62a4d774303c899db69020f9c70ee1dfc08c7ce9e"]
               => permit();"#
        ));
        // Other claims: a mismatch of types compares false (`!=` included).
        for cond in [
            r#"type=="x-ms-attestation-type", value>=0"#,
            r#"type=="x-ms-attestation-type", value==true"#,
            r#"type=="x-ms-attestation-type", value!=1"#,
        ] {
            let rule = format!("[{cond}] => permit();");
            assert!(!permits(&rule), "{rule}");
        }
        // Ordering through a reference to a non-integer is false too.
        assert!(!permits(
            r#"a:[type=="tee"] && [type=="x-ms-attestation-type", value<=a.value] => permit();"#
        ));
    }

    #[test]
    fn long_claims_cost_steps_by_their_bytes_and_added_bytes_are_capped() {
        // A 1 MiB incoming claim: comparing it with a string of its length costs its length,
        // so a policy that does so again and again hits the step bound instead of taking
        // seconds. Comparing it with a short literal stays cheap.
        let mut big = claims();
        big.insert("maa-ehd".into(), json!("A".repeat(1 << 20)));
        let cheap = r#"[type=="maa-ehd", value=="B"] => deny();"#.repeat(200);
        let p = MaaPolicy::parse(&format!(
            "version=1.0; authorizationrules {{ {cheap} => permit(); }};"
        ))
        .unwrap();
        assert!(p.evaluate(&big).is_ok());
        let scan =
            r#"c:[type=="maa-ehd"] && [type=="maa-ehd", value!=c.value] => deny();"#.repeat(40);
        let p = MaaPolicy::parse(&format!(
            "version=1.0; authorizationrules {{ {scan} => permit(); }};"
        ))
        .unwrap();
        assert!(matches!(
            p.evaluate(&big),
            Err(MaaDeny::LimitExceeded {
                limit: "evaluation steps",
                ..
            })
        ));
        // Copying a big claim into the token is bounded by bytes, not only by count.
        let p = MaaPolicy::parse(
            r#"version=1.0; authorizationrules { => permit(); };
               issuancerules { c:[type=="maa-ehd"] => issue(claim=c); };"#,
        )
        .unwrap();
        assert!(matches!(
            p.evaluate(&big),
            Err(MaaDeny::LimitExceeded {
                limit: "bytes of claims added by the policy",
                ..
            })
        ));
        // Small claims are unaffected.
        assert!(p.evaluate(&claims()).is_ok());
    }

    #[test]
    fn identifier_references_across_conditions() {
        let auth = r#"
            => add(type="expected-signer",
                   value="83d719e77deaca1470f6baf62a4d774303c899db69020f9c70ee1dfc08c7ce9e");
            F1:[type=="expected-signer", issuer=="AttestationPolicy"] &&
            C2:[type=="x-ms-sgx-mrsigner", issuer=="AttestationService", value==F1.value]
                => permit();"#;
        assert!(permits(auth));
        let wrong = auth.replace("83d719e7", "00000000");
        assert!(!permits(&wrong));
        // A reference to a property other than `value`, and to a later-bound claim's type.
        assert!(permits(
            r#"a:[type=="svn"] && b:[type=="x-ms-sgx-svn", value==a.value] &&
               [type!=b.type, value==b.value] => permit();"#
        ));
    }

    #[test]
    fn issue_claim_copy_and_issueproperty() {
        let policy = r#"version=1.0; authorizationrules { => permit(); };
            issuancerules {
                c:[type=="x-ms-sgx-svn"] => issue(claim=c);
                c:[type=="x-ms-sgx-product-id"] => issueproperty(claim = c);
                [type=="x-ms-sgx-svn", issuer=="AttestationPolicy"] => issue(type="copied", value=true);
            };"#;
        let out = eval(policy).unwrap();
        assert_eq!(
            Value::Object(out.claims),
            json!({"x-ms-sgx-svn": 3, "copied": true})
        );
        assert_eq!(
            Value::Object(out.properties),
            json!({"x-ms-sgx-product-id": 1})
        );
    }

    #[test]
    fn add_feeds_later_rules_but_not_the_token() {
        let policy = r#"version=1.0;
            authorizationrules {
                [type=="x-ms-sgx-svn", value>=3] => add(type="svn-ok", value=true);
                [type=="svn-ok", value==true, issuer=="AttestationPolicy"] => permit();
            };
            issuancerules {
                c:[type=="svn-ok"] => add(type="level", value=7);
                c:[type=="level"] => issue(type="security-level", value=c.value);
            };"#;
        let out = eval(policy).unwrap();
        assert_eq!(Value::Object(out.claims), json!({"security-level": 7}));
        // An add() does not see its own claim: a later rule does.
        let p = MaaPolicy::parse(policy).unwrap();
        let mut c = claims();
        c.insert("x-ms-sgx-svn".into(), json!(2));
        assert_eq!(p.evaluate(&c), Err(MaaDeny::NoPermit));
    }

    #[test]
    fn deny_takes_precedence_over_permit() {
        let policy = r#"version=1.0; authorizationrules {
                => permit();
                [type=="x-ms-sgx-is-debuggable", value==true] => deny();
                [type=="x-ms-sgx-svn", value < 5]   =>   deny()  ;
                => permit();
            };"#;
        let err = eval(policy).unwrap_err();
        assert_eq!(
            err,
            MaaDeny::Denied {
                index: 3,
                rule: r#"[type=="x-ms-sgx-svn", value < 5]   =>   deny()  ;"#.into()
            }
        );
        assert_eq!(
            err.to_string(),
            r#"authorizationrules rule 3 denied: [type=="x-ms-sgx-svn", value < 5]   =>   deny()  ;"#
        );
        assert!(matches!(
            eval("version=1.0; authorizationrules { => deny(); => permit(); };"),
            Err(MaaDeny::Denied { index: 1, .. })
        ));
    }

    #[test]
    fn no_permit_denies() {
        for policy in [
            "version=1.0; authorizationrules { };",
            "version=1.0; authorizationrules { [type==\"nope\"] => permit(); };",
            "version=1.0; authorizationrules { => add(type=\"a\", value=1); }; \
             issuancerules { => issue(type=\"b\", value=2); };",
        ] {
            assert_eq!(eval(policy), Err(MaaDeny::NoPermit), "{policy}");
        }
    }

    #[test]
    fn repeated_type_becomes_an_array_and_rules_fire_per_match() {
        let policy = r#"version=1.0; authorizationrules {
                [type=="x-confcom-advisory-ids", value=="INTEL-SA-00615"] => permit();
                [type=="x-confcom-advisory-ids", value=="INTEL-SA-99999"] => deny();
            };
            issuancerules {
                c:[type=="x-confcom-advisory-ids"] => issue(type="advisories", value=c.value);
                => issue(type="one", value=1);
                => issue(type="one", value="two");
            };"#;
        let out = eval(policy).unwrap();
        assert_eq!(
            Value::Object(out.claims),
            json!({"advisories": ["INTEL-SA-00615", "INTEL-SA-00657"], "one": [1, "two"]})
        );
    }

    #[test]
    fn negated_conditions_need_version_1_2() {
        let body = r#"authorizationrules {
                ![type=="x-ms-sgx-is-debuggable", value==true] && [type=="tee"] => permit();
                ![type=="x-ms-sgx-svn"] => deny();
            };"#;
        assert!(eval(&format!("version=1.2; {body}")).is_ok());
        let e = parse_err(&format!("version=1.1;\n{body}"));
        assert_eq!(e.position(), Some((3, 17)), "{e}");
        assert!(e.to_string().contains("needs policy version 1.2"), "{e}");
        let mut c = claims();
        c.insert("x-ms-sgx-is-debuggable".into(), json!(true));
        let p = MaaPolicy::parse(&format!("version=1.2; {body}")).unwrap();
        assert_eq!(p.evaluate(&c), Err(MaaDeny::NoPermit));
    }

    #[test]
    fn comments_whitespace_and_keyword_case() {
        let policy = "// leading comment\n/* block\n comment */ Version = 1.0 ; // trailing\n\
            AuthorizationRules /* here */ {\n  [Type==\"tee\", VALUE==\"sgx\"] => Permit();\n};\n\
            ISSUANCERULES { c:[type==\"tee\"] => Issue(Type=\"t\", Value=c.Value); };\n// end";
        let out = eval(policy).unwrap();
        assert_eq!(Value::Object(out.claims), json!({"t": "sgx"}));
        // Identifiers are case-sensitive.
        let e =
            parse_err("version=1.0; authorizationrules { c:[type==\"tee\"] => add(claim=C); };");
        assert!(e.to_string().contains("`C` is not bound"), "{e}");
    }

    #[test]
    fn string_escapes() {
        let mut c = claims();
        c.insert("odd".into(), json!("a\"b\\c"));
        let p = MaaPolicy::parse(
            r#"version=1.0; authorizationrules { [type=="odd", value=="a\"b\\c"] => permit(); };"#,
        )
        .unwrap();
        assert!(p.evaluate(&c).is_ok());
        let e = parse_err(r#"version=1.0; authorizationrules { [type=="a\n"] => permit(); };"#);
        assert_eq!(e.position(), Some((1, 44)), "{e}");
    }

    #[test]
    fn parse_errors_name_line_column_and_expectation() {
        let cases: &[(&str, (usize, usize), &str)] = &[
            ("", (1, 1), "expected `version`, found end of input"),
            ("authorizationrules { };", (1, 1), "expected `version`"),
            ("version=2.0;", (1, 9), "unsupported policy version 2.0"),
            ("version=1.0", (1, 12), "expected `;` after the version"),
            (
                "version=1.0;\nissuancerules { };",
                (2, 1),
                "expected `authorizationrules`",
            ),
            (
                "version=1.0;\nauthorizationrules {\n c:[type=\"x\"] => permit();\n};",
                (3, 9),
                "found `=` (conditions compare with `==`)",
            ),
            (
                "version=1.0;\nauthorizationrules {\n [type==\"x\"] => permit()\n};",
                (4, 1),
                "expected `;` after the rule, found `}`",
            ),
            (
                "version=1.0; authorizationrules { [type==\"x\"] permit(); };",
                (1, 47),
                "expected `&&` or `=>`",
            ),
            (
                "version=1.0; authorizationrules { => issue(type=\"a\", value=1); };",
                (1, 38),
                "`issue` is not allowed in authorizationrules",
            ),
            (
                "version=1.0; authorizationrules { => permit(); } ",
                (1, 50),
                "expected `;` after the `}` of `authorizationrules`, found end of input",
            ),
            (
                "version=1.0; authorizationrules { => permit(); }; garbage",
                (1, 51),
                "expected `issuancerules` or end of policy, found `garbage`",
            ),
            (
                "version=1.0; authorizationrules { => permit(); }; authorizationrules { };",
                (1, 51),
                "repeated or out of order",
            ),
            (
                "version=1.0; configurationrules { }; authorizationrules { };",
                (1, 14),
                "needs policy version 1.1",
            ),
            (
                "version=1.0; authorizationrules { [type==\"x\", value<\"a\"] => permit(); };",
                (1, 53),
                "expected an integer after an ordering operator",
            ),
            (
                "version=1.0; authorizationrules { [type==\"x\", value==F1.value] => permit(); };",
                (1, 54),
                "`F1` is not bound by an earlier condition",
            ),
            (
                "version=1.0; authorizationrules { c:[type==\"x\"] && c:[type==\"y\"] => permit(); };",
                (1, 52),
                "`c` is already bound",
            ),
            (
                "version=1.0; authorizationrules { [type==\u{201c}x\u{201d}] => permit(); };",
                (1, 42),
                "typographic quote",
            ),
            (
                "version=1.0; authorizationrules { [type==\"x\"] => permit(); };\n/* open",
                (2, 1),
                "unterminated `/*` comment",
            ),
            (
                "version=1.0; authorizationrules { [type==\"x] => permit(); };",
                (1, 42),
                "unterminated string literal",
            ),
            (
                "version=1.0; authorizationrules { [] => permit(); };",
                (1, 36),
                "expected a claim property",
            ),
            (
                "version=1.0; authorizationrules { => permit(1); };",
                (1, 45),
                "`permit()` takes no arguments",
            ),
            (
                "version=1.0; issuancerules { };",
                (1, 14),
                "expected `authorizationrules`, found `issuancerules`",
            ),
            (
                "version=1.0; authorizationrules { => add(type=\"a\"); };",
                (1, 50),
                "missing `type=` or `value=`",
            ),
            (
                "version=1.0; authorizationrules { => add(type=1, value=1); };",
                (1, 47),
                "a claim type is a string",
            ),
            (
                "version=1.0; authorizationrules { [type==\"x\", value==99999999999999999999] => permit(); };",
                (1, 54),
                "does not fit in 64 bits",
            ),
            (
                "version=1.0; authorizationrules { [type==\"x\"] & [type==\"y\"] => permit(); };",
                (1, 47),
                "single `&`",
            ),
        ];
        let wrong: Vec<String> = cases
            .iter()
            .filter_map(|(text, pos, msg)| {
                let e = parse_err(text);
                (e.position() != Some(*pos) || !e.to_string().contains(msg))
                    .then(|| format!("{text}\n  want {pos:?} {msg}\n  got  {e}"))
            })
            .collect();
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn version_1_2_functions_are_rejected_not_ignored() {
        let text = "version=1.2; authorizationrules { => permit(); };\nissuancerules {\n  \
            c:[type==\"events\"] => add(type=\"x\", value=JmesPath(c.value, \"foo\"));\n};";
        let e = parse_err(text);
        assert!(matches!(e, ParseError::Unsupported { .. }), "{e}");
        assert_eq!(e.position(), Some((3, 45)));
        assert!(e.to_string().contains("`JmesPath(…)`"), "{e}");
        let e = parse_err(
            "version=1.0; authorizationrules { [type==\"x\", value==1.5] => permit(); };",
        );
        assert!(matches!(e, ParseError::Unsupported { .. }), "{e}");
    }

    #[test]
    fn bounds() {
        let big = format!(
            "version=1.0; authorizationrules {{ => permit(); }}; /*{}*/",
            " ".repeat(MAX_POLICY_BYTES)
        );
        assert!(matches!(
            MaaPolicy::parse(&big),
            Err(ParseError::TooLarge {
                max: MAX_POLICY_BYTES,
                ..
            })
        ));

        let rules = |n: usize| {
            format!(
                "version=1.0; authorizationrules {{ {} }};",
                "=>permit();".repeat(n)
            )
        };
        assert!(MaaPolicy::parse(&rules(MAX_RULES)).is_ok());
        let e = parse_err(&rules(MAX_RULES + 1));
        assert!(matches!(e, ParseError::Limit { what: "rules", .. }), "{e}");
        assert_eq!(e.position(), Some((1, 35 + 11 * MAX_RULES)));

        let string = |n: usize| {
            format!(
                "version=1.0; authorizationrules {{ [type==\"{}\"] => permit(); }};",
                "a".repeat(n)
            )
        };
        assert!(MaaPolicy::parse(&string(MAX_STRING_BYTES)).is_ok());
        let e = parse_err(&string(MAX_STRING_BYTES + 1));
        assert!(
            matches!(
                e,
                ParseError::Limit {
                    what: "bytes in a string literal",
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(e.position(), Some((1, 42)));

        let conds = |n: usize| {
            let c = vec!["[type==\"tee\"]"; n].join("&&");
            format!("version=1.0; authorizationrules {{ {c} => permit(); }};")
        };
        assert!(eval(&conds(MAX_CONDITIONS)).is_ok());
        let e = parse_err(&conds(MAX_CONDITIONS + 1));
        assert!(
            matches!(
                e,
                ParseError::Limit {
                    what: "conditions in a rule",
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn evaluation_bounds_deny() {
        // 100 × 100 combinations is over MAX_BINDINGS.
        let mut c = claims();
        c.insert("many".into(), json!((0..100).collect::<Vec<i64>>()));
        let p = MaaPolicy::parse(
            r#"version=1.0; authorizationrules { => permit(); };
            issuancerules { a:[type=="many"] && b:[type=="many"] => issue(type="x", value=a.value); };"#,
        )
        .unwrap();
        assert!(matches!(
            p.evaluate(&c),
            Err(MaaDeny::LimitExceeded {
                section: Section::Issuance,
                index: 1,
                limit: "claim combinations per rule",
                ..
            })
        ));
        // Rules that keep adding claims stop at MAX_ADDED_CLAIMS.
        let adder = r#"c:[type=="many"] => add(type="more", value=c.value);"#.repeat(41);
        let p = MaaPolicy::parse(&format!(
            "version=1.0; authorizationrules {{ {adder} => permit(); }};"
        ))
        .unwrap();
        assert!(matches!(
            p.evaluate(&c),
            Err(MaaDeny::LimitExceeded {
                section: Section::Authorization,
                limit: "claims added by the policy",
                ..
            })
        ));
        // Every property comparison counts towards MAX_STEPS.
        let mut huge = claims();
        huge.insert("huge".into(), json!(vec![0; 50_000]));
        let p = MaaPolicy::parse(&format!(
            "version=1.0; authorizationrules {{ => permit(); {} }};",
            r#"[type=="absent"] => deny();"#.repeat(100)
        ))
        .unwrap();
        assert!(matches!(
            p.evaluate(&huge),
            Err(MaaDeny::LimitExceeded {
                section: Section::Authorization,
                index: 6,
                limit: "evaluation steps",
                ..
            })
        ));
        // Unbound conditions do not multiply, so many of them stay cheap.
        let cond = vec![r#"[type=="many", value==99]"#; MAX_CONDITIONS].join(" && ");
        let p = MaaPolicy::parse(&format!(
            "version=1.0; authorizationrules {{ {cond} => permit(); }};"
        ))
        .unwrap();
        assert!(p.evaluate(&c).is_ok());
    }

    #[test]
    fn looks_like_maa_detection() {
        for (text, want) in [
            ("version=1.0;", true),
            ("  // c\n /* d */ Version = 1.2; authorizationrules {", true),
            ("version= 1.0", true),
            ("version: 1\nallow_debug: false\n", false),
            ("{\"version\": \"1.0\"}", false),
            ("allow_debug: false", false),
            ("", false),
            ("/* never closed", false),
            ("versionx=1.0;", false),
        ] {
            assert_eq!(looks_like_maa(text), want, "{text:?}");
        }
    }

    #[test]
    fn every_prefix_parses_or_errors_without_panicking() {
        let full = format!("{SGX_CUSTOM}\n// tail\n{}", r#"/* c */"#);
        let v12 = r#"version=1.2; configurationrules { => issueproperty(type="p", value=-1); };
            authorizationrules { ![type=="x"] && a:[type=="tee", value!="tdx"] &&
              [type=="svn", value>=a.value] => add(claim=a); => permit(); };
            issuancerules { b:[type=="$tee", valueType=="String", issuer=="AttestationService"]
              => issue(type="q\"\\", value=b.value); };"#;
        for text in [full.as_str(), v12] {
            assert!(MaaPolicy::parse(text).is_ok(), "{text}");
            let mut oks = 0;
            for (i, _) in text.char_indices().chain([(text.len(), ' ')]) {
                let prefix = &text[..i];
                fuzz_entry(prefix.as_bytes());
                if let Ok(p) = MaaPolicy::parse(prefix) {
                    oks += 1;
                    let _ = p.evaluate(&claims());
                }
            }
            assert!(oks >= 1, "the full text parses");
        }
        fuzz_entry(&[0xff, 0xfe]);
    }

    #[test]
    fn fuzz_entry_accepts_valid_policies() {
        fuzz_entry(SGX_CUSTOM.as_bytes());
        assert!(eval(SGX_CUSTOM).is_ok());
    }
}
