//! Declarative attestation policy (YAML or JSON) over the token's claims.
//!
//! ```yaml
//! allow_debug: false                 # rule "allow_debug"
//! mrenclave: ["<hex>", ...]          # rule "mrenclave"
//! mrsigner: ["<hex>", ...]           # rule "mrsigner"
//! product_id: [1, 2]                 # rule "product_id"
//! min_svn: 3                         # rule "min_svn"
//! accepted_tcb_statuses: [UpToDate, SWHardeningNeeded]   # rule "accepted_tcb_statuses"
//! accepted_advisories: [INTEL-SA-00615]                  # rule "accepted_advisories"
//! rules:                             # generic rules over any claim
//!   - { name: ehd-set, claim: x-ms-sgx-report-data, one_of: ["..."] }
//!   - { name: svn, claim: x-ms-sgx-svn, min: 2 }
//! ```
//! Absent fields do not constrain. Without `accepted_tcb_statuses`, every status except
//! `Revoked` is accepted (the token carries the status and the EAR verdict).
//!
//! A policy text that starts with `version=` is MAA's claim-rule grammar instead
//! ([`crate::maa_policy`]); [`AnyPolicy`] holds either.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A parsed policy plus its source text.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Whether debug enclaves are accepted.
    #[serde(default)]
    pub allow_debug: bool,
    /// Accepted MRENCLAVE values (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mrenclave: Option<Vec<String>>,
    /// Accepted MRSIGNER values (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mrsigner: Option<Vec<String>>,
    /// Accepted ISV product IDs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_id: Option<Vec<u16>>,
    /// Minimum ISV SVN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_svn: Option<u16>,
    /// Accepted TCB statuses (Intel spelling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_tcb_statuses: Option<Vec<String>>,
    /// Advisories that may be present (any other present advisory fails).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_advisories: Option<Vec<String>>,
    /// Generic rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
}

/// A generic rule over one claim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// Name reported on failure.
    pub name: String,
    /// The claim (top-level name; `a.b` for a nested field).
    pub claim: String,
    /// The check.
    #[serde(flatten)]
    pub check: Check,
}

/// What a rule checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// Equal to this value.
    Equals(Value),
    /// Equal to one of these.
    OneOf(Vec<Value>),
    /// A number at least this.
    Min(i64),
    /// A number at most this.
    Max(i64),
    /// An array whose items are all in this list.
    SubsetOf(Vec<Value>),
}

/// Errors of policy parsing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Neither valid YAML nor JSON of the policy shape.
    #[error("invalid policy: {0}")]
    Parse(String),
    /// The policy's JWS form does not unwrap (see [`crate::policy_jws`]).
    #[error(transparent)]
    Jws(#[from] crate::policy_jws::Error),
    /// An MAA claim-rule policy that does not parse.
    #[error("invalid MAA policy: {0}")]
    Maa(#[from] crate::maa_policy::ParseError),
}

/// The claim under which an MAA policy's issued claims go in the token (as in MAA's tokens).
pub const CLAIM_POLICY_ISSUED: &str = "x-ms-policy";
/// The claim under which an MAA policy's `issueproperty` values go in the token. confcom acts
/// on none of them (MAA uses them for Azure's TCB baselines and token lifetime); they are
/// echoed so that a relying party can see what the policy asked for.
pub const CLAIM_POLICY_PROPERTIES: &str = "x-confcom-policy-properties";

/// A policy in either language.
#[derive(Debug, Clone)]
pub enum AnyPolicy {
    /// confcom's declarative YAML/JSON.
    Declarative(Policy),
    /// MAA's claim-rule grammar.
    Maa(crate::maa_policy::MaaPolicy),
}

impl AnyPolicy {
    /// Parses MAA claim-rule text (it starts with `version=`) or else declarative YAML/JSON.
    /// A leading byte-order mark (as Windows editors save) is ignored.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        if crate::maa_policy::looks_like_maa(text) {
            Ok(Self::Maa(crate::maa_policy::MaaPolicy::parse(text)?))
        } else {
            Policy::parse(text).map(Self::Declarative)
        }
    }

    /// The policy language, for logs and the policy API.
    #[must_use]
    pub fn language(&self) -> &'static str {
        match self {
            Self::Declarative(_) => "declarative",
            Self::Maa(_) => "maa-claim-rules",
        }
    }

    /// Evaluates the policy over the token's claims; an MAA policy's issued claims and
    /// properties are added to them ([`CLAIM_POLICY_ISSUED`], [`CLAIM_POLICY_PROPERTIES`]).
    /// Only what the service derived from the quote is an incoming claim of an MAA policy:
    /// not the client's `nonce` (nothing binds it to the quote), nor the client's runtime and
    /// init-time JSON (`x-ms-runtime`, `x-ms-inittime`: MAA reads those only through the 1.2
    /// functions, which are not supported).
    pub fn apply(&self, claims: &mut Value) -> Result<(), Deny> {
        match self {
            Self::Declarative(p) => p.evaluate(claims),
            Self::Maa(p) => {
                let to_deny = |e: crate::maa_policy::MaaDeny| Deny {
                    rule: match &e {
                        crate::maa_policy::MaaDeny::Denied { index, .. } => {
                            format!("authorizationrules[{index}]")
                        }
                        _ => "authorizationrules".into(),
                    },
                    reason: e.to_string(),
                };
                let Some(obj) = claims.as_object_mut() else {
                    // No claims at all: nothing is added to a non-object.
                    return p
                        .evaluate(&serde_json::Map::new())
                        .map(|_| ())
                        .map_err(to_deny);
                };
                // The client-side entries step out of the claim set while the policy runs
                // (instead of copying the whole set without them).
                let client_side: Vec<(String, Value)> = ["nonce", "x-ms-runtime", "x-ms-inittime"]
                    .iter()
                    .filter_map(|k| obj.remove_entry(*k))
                    .collect();
                let evaluated = p.evaluate(obj);
                obj.extend(client_side);
                let outcome = evaluated.map_err(to_deny)?;
                if !outcome.claims.is_empty() {
                    obj.insert(CLAIM_POLICY_ISSUED.into(), Value::Object(outcome.claims));
                }
                if !outcome.properties.is_empty() {
                    obj.insert(
                        CLAIM_POLICY_PROPERTIES.into(),
                        Value::Object(outcome.properties),
                    );
                }
                Ok(())
            }
        }
    }
}

/// A denial: the rule that failed and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy rule \"{rule}\" failed: {reason}")]
pub struct Deny {
    /// Rule name.
    pub rule: String,
    /// Reason (claim values are public claims of the quote).
    pub reason: String,
}

impl Policy {
    /// Parses YAML (a superset of JSON).
    pub fn parse(text: &str) -> Result<Self, Error> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_yaml::from_str(text).map_err(|e| Error::Parse(e.to_string()))
    }

    /// Evaluates against the claims; the first failing rule denies.
    pub fn evaluate(&self, claims: &Value) -> Result<(), Deny> {
        let deny = |rule: &str, reason: String| {
            Err(Deny {
                rule: rule.to_owned(),
                reason,
            })
        };
        let s = |k: &str| {
            claims
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let n = |k: &str| claims.get(k).and_then(Value::as_i64).unwrap_or(-1);
        if !self.allow_debug && claims.get("x-ms-sgx-is-debuggable") != Some(&Value::Bool(false)) {
            return deny("allow_debug", "the enclave is debuggable".into());
        }
        if let Some(list) = &self.mrenclave {
            let v = s("x-ms-sgx-mrenclave");
            if !list.iter().any(|m| m.eq_ignore_ascii_case(&v)) {
                return deny("mrenclave", format!("MRENCLAVE {v} is not allowed"));
            }
        }
        if let Some(list) = &self.mrsigner {
            let v = s("x-ms-sgx-mrsigner");
            if !list.iter().any(|m| m.eq_ignore_ascii_case(&v)) {
                return deny("mrsigner", format!("MRSIGNER {v} is not allowed"));
            }
        }
        if let Some(list) = &self.product_id {
            let v = n("x-ms-sgx-product-id");
            if !list.iter().any(|p| i64::from(*p) == v) {
                return deny("product_id", format!("product ID {v} is not allowed"));
            }
        }
        if let Some(min) = self.min_svn {
            let v = n("x-ms-sgx-svn");
            if v < i64::from(min) {
                return deny("min_svn", format!("SVN {v} is below {min}"));
            }
        }
        let status = s(crate::attest::CLAIM_TCB_STATUS);
        match &self.accepted_tcb_statuses {
            Some(list) if !list.iter().any(|x| x.eq_ignore_ascii_case(&status)) => {
                return deny(
                    "accepted_tcb_statuses",
                    format!("TCB status {status} is not accepted"),
                );
            }
            None if status == "Revoked" => {
                return deny("accepted_tcb_statuses", "TCB status Revoked".into());
            }
            _ => {}
        }
        if let Some(list) = &self.accepted_advisories {
            let present = claims
                .get(crate::attest::CLAIM_ADVISORY_IDS)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for a in present.iter().filter_map(Value::as_str) {
                if !list.iter().any(|x| x.eq_ignore_ascii_case(a)) {
                    return deny(
                        "accepted_advisories",
                        format!("advisory {a} is not accepted"),
                    );
                }
            }
        }
        for r in &self.rules {
            let v = r
                .claim
                .split('.')
                .try_fold(claims, |v, part| v.get(part))
                .unwrap_or(&Value::Null);
            let ok = match &r.check {
                Check::Equals(x) => v == x,
                Check::OneOf(xs) => xs.contains(v),
                Check::Min(m) => v.as_i64().is_some_and(|n| n >= *m),
                Check::Max(m) => v.as_i64().is_some_and(|n| n <= *m),
                Check::SubsetOf(xs) => v
                    .as_array()
                    .is_some_and(|a| a.iter().all(|i| xs.contains(i))),
            };
            if !ok {
                return deny(&r.name, format!("claim {} = {v}", r.claim));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims() -> Value {
        json!({
            "x-ms-sgx-is-debuggable": false,
            "x-ms-sgx-mrenclave": "aa", "x-ms-sgx-mrsigner": "bb",
            "x-ms-sgx-product-id": 1, "x-ms-sgx-svn": 3,
            "x-confcom-tcb-status": "SWHardeningNeeded",
            "x-confcom-advisory-ids": ["INTEL-SA-00615"],
        })
    }

    #[test]
    fn default_policy_rejects_debug_and_revoked_only() {
        let p = Policy::parse("").unwrap();
        assert!(p.evaluate(&claims()).is_ok());
        let mut c = claims();
        c["x-ms-sgx-is-debuggable"] = json!(true);
        assert_eq!(p.evaluate(&c).unwrap_err().rule, "allow_debug");
        let mut c = claims();
        c["x-confcom-tcb-status"] = json!("Revoked");
        assert_eq!(p.evaluate(&c).unwrap_err().rule, "accepted_tcb_statuses");
    }

    #[test]
    fn each_rule_names_itself() {
        let cases = [
            ("mrenclave: [cc]", "mrenclave"),
            ("mrsigner: [cc]", "mrsigner"),
            ("product_id: [2]", "product_id"),
            ("min_svn: 4", "min_svn"),
            ("accepted_tcb_statuses: [UpToDate]", "accepted_tcb_statuses"),
            (
                "accepted_advisories: [INTEL-SA-00289]",
                "accepted_advisories",
            ),
            ("rules: [{name: r1, claim: x-ms-sgx-svn, max: 2}]", "r1"),
            (
                "rules: [{name: r2, claim: x-ms-sgx-mrsigner, one_of: [x]}]",
                "r2",
            ),
        ];
        for (text, rule) in cases {
            let p = Policy::parse(text).unwrap();
            assert_eq!(p.evaluate(&claims()).unwrap_err().rule, rule, "{text}");
        }
        let ok = Policy::parse(
            r#"{"mrenclave":["AA"],"min_svn":3,"accepted_advisories":["INTEL-SA-00615"],
                "rules":[{"name":"a","claim":"x-confcom-advisory-ids","subset_of":["INTEL-SA-00615"]}]}"#,
        )
        .unwrap();
        assert!(ok.evaluate(&claims()).is_ok());
        assert!(Policy::parse("bogus_field: 1").is_err());
    }
    #[test]
    fn either_language_parses_and_maa_outcomes_land_in_the_claims() {
        assert_eq!(AnyPolicy::parse("").unwrap().language(), "declarative");
        assert_eq!(
            AnyPolicy::parse("min_svn: 2").unwrap().language(),
            "declarative"
        );
        assert!(matches!(
            AnyPolicy::parse("version=1.0; authorizationrules { => permit() };"),
            Err(Error::Maa(_))
        ));
        // Shaped like MAA's default SGX policy (1.1): a configuration property, permit all,
        // re-issue short names.
        let p = AnyPolicy::parse(
            r#"version= 1.1;
            configurationrules { => issueproperty(type="x-ms-sgx-tcbidentifier", value="azuredefault"); };
            authorizationrules { => permit(); };
            issuancerules {
                c:[type=="x-ms-sgx-is-debuggable"] => issue(type="is-debuggable", value=c.value);
                c:[type=="x-ms-sgx-svn"] => issue(type="svn", value=c.value);
            };"#,
        )
        .unwrap();
        assert_eq!(p.language(), "maa-claim-rules");
        let mut c = claims();
        p.apply(&mut c).unwrap();
        assert_eq!(c[CLAIM_POLICY_ISSUED]["is-debuggable"], false);
        assert_eq!(c[CLAIM_POLICY_ISSUED]["svn"], 3);
        assert_eq!(
            c[CLAIM_POLICY_PROPERTIES]["x-ms-sgx-tcbidentifier"],
            "azuredefault"
        );
        // Advisory IDs are one incoming claim per ID.
        let p = AnyPolicy::parse(
            r#"version=1.0; authorizationrules {
                [type=="x-confcom-advisory-ids", value=="INTEL-SA-00615"] => deny();
                => permit();
            };"#,
        )
        .unwrap();
        let mut c = claims();
        let deny = p.apply(&mut c).unwrap_err();
        assert_eq!(deny.rule, "authorizationrules[1]");
        // A byte-order mark does not hide the language; client JSON is not a claim.
        let p = AnyPolicy::parse(
            "\u{feff}version=1.0; authorizationrules { [type==\"x-ms-runtime\"] => permit(); };",
        )
        .unwrap();
        let mut c = claims();
        c["x-ms-runtime"] = json!(["a", "b"]);
        assert_eq!(p.apply(&mut c).unwrap_err().rule, "authorizationrules");
        // Nothing issued, nothing added.
        let p = AnyPolicy::parse("version=1.0; authorizationrules { => permit(); };").unwrap();
        let mut c = claims();
        p.apply(&mut c).unwrap();
        assert_eq!(c, claims());
    }
}
