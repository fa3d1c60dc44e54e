//! The suite-wide request log (written by doubles when `PHOENIX_PVE_REQUEST_LOG` names a
//! directory, see [`crate::server::REQUEST_LOG_ENV`]) and its check against both schemas.
//!
//! A request fails when the schema of the version it was sent to refuses it (unknown endpoint or
//! parameter, malformed value or property string, missing parameter). It is also checked against
//! the other version: there, an endpoint, parameter or property-string sub-key that does not
//! exist is a failure too, unless it is version-specific — it exists in the version the request
//! was sent to and not in the other, found by comparing the two extracts (the driver sends it to
//! that version only). Values the other version would read differently are not failures: the
//! request never goes there.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::schema::{ApiSchema, PveVersion};

/// One request as a double logs it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LoggedRequest {
    /// The version the double played (`8.4.5`, `9.2.3`).
    pub version: String,
    /// HTTP method.
    pub method: String,
    /// Path below `/api2/json`.
    pub path: String,
    /// Parameters, decoded.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// The status it was answered with (0: dropped before it was handled).
    #[serde(default)]
    pub status: u16,
}

/// A request (or a log line) that failed the check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The log file.
    pub file: PathBuf,
    /// Its line (from 1).
    pub line: usize,
    /// The request's method (empty when the line could not be read).
    pub method: String,
    /// The request's path.
    pub path: String,
    /// The version the request was sent to, and the version whose schema refused it.
    pub versions: Option<(PveVersion, PveVersion)>,
    /// The parameter, when the failure is about one.
    pub param: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {} {}", self.file.display(), self.line, self.method, self.path)?;
        if let Some((sent, against)) = self.versions {
            write!(f, " (sent to {}, checked against {})", sent.name(), against.name())?;
        }
        if let Some(p) = &self.param {
            write!(f, ": parameter '{p}'")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The outcome of checking a directory of logs.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// How many log files were read.
    pub files: usize,
    /// How many requests were checked.
    pub checked: usize,
    /// What failed.
    pub failures: Vec<Failure>,
}

impl Report {
    /// Whether the check passed: requests were checked and none failed.
    pub fn passed(&self) -> bool {
        self.checked > 0 && self.failures.is_empty()
    }
}

/// A refusal of one request: the version whose schema refused it, the parameter, the message.
pub type Refusal = (PveVersion, Option<String>, String);

/// Checks one request sent to `sent_to` against its schema and the other version's.
pub fn check_request(sent_to: PveVersion, method: &str, path: &str, params: &BTreeMap<String, String>) -> Vec<Refusal> {
    let values: BTreeMap<String, Value> = crate::schema::form_values(params);
    let own = ApiSchema::get(sent_to);
    if let Err(errors) = own.check(method, path, &values) {
        return errors.into_iter().map(|e| (sent_to, e.param, e.message)).collect();
    }
    let other = sent_to.other();
    let Err(errors) = ApiSchema::get(other).check(method, path, &values) else { return Vec::new() };
    errors
        .into_iter()
        .filter(|e| match (&e.param, missing_in_other(&e.message)) {
            // The endpoint exists in the version it was sent to (that check passed).
            (None, _) => false,
            (Some(name), Some(Missing::Parameter)) => !own.defines(method, path, name, None),
            (Some(name), Some(Missing::SubKey(key))) => !own.defines(method, path, name, Some(key)),
            // The other version reads the value differently; the request never goes there.
            (Some(_), None) => false,
        })
        .map(|e| (other, e.param, e.message))
        .collect()
}

/// What the other version lacks, by the words of its refusal.
enum Missing<'m> {
    Parameter,
    SubKey(&'m str),
}

fn missing_in_other(message: &str) -> Option<Missing<'_>> {
    if message.contains("property is not defined in schema") {
        return Some(Missing::Parameter);
    }
    message
        .strip_prefix("invalid format - property '")
        .and_then(|rest| rest.strip_suffix("' is not defined in the format"))
        .map(Missing::SubKey)
}

/// Reads every `*.jsonl` file of `dir` and checks every request in it.
pub fn check_dir(dir: &Path) -> Result<Report, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    let mut report = Report { files: files.len(), ..Report::default() };
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            check_line(&file, i + 1, line, &mut report);
        }
    }
    Ok(report)
}

fn check_line(file: &Path, line: usize, text: &str, report: &mut Report) {
    let failure = |method: &str, path: &str, versions, param, message| Failure {
        file: file.to_path_buf(),
        line,
        method: method.to_string(),
        path: path.to_string(),
        versions,
        param,
        message,
    };
    let request: LoggedRequest = match serde_json::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            report.failures.push(failure("", "", None, None, format!("not a logged request: {e}")));
            return;
        }
    };
    let (method, path) = (request.method.as_str(), request.path.as_str());
    let Some(version) = PveVersion::from_name(&request.version) else {
        report.failures.push(failure(method, path, None, None, format!("unknown version '{}'", request.version)));
        return;
    };
    report.checked += 1;
    for (against, param, message) in check_request(version, method, path, &request.params) {
        report.failures.push(failure(method, path, Some((version, against)), param, message));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect()
    }

    const CONFIG: &str = "/nodes/pve1/lxc/950/config";

    #[test]
    fn a_version_specific_parameter_passes_for_its_version_only() {
        let net = params(&[("net0", "name=eth0,bridge=vmbr0,host-managed=1")]);
        assert_eq!(check_request(PveVersion::V9, "PUT", CONFIG, &net), Vec::new());
        let refused = check_request(PveVersion::V8, "PUT", CONFIG, &net);
        assert!(refused.iter().any(|(v, p, _)| *v == PveVersion::V8 && p.as_deref() == Some("net0")), "{refused:?}");
        let create = |extra: (&str, &str)| {
            params(&[("vmid", "950"), ("ostemplate", "local:vztmpl/debian.tar.zst"), ("hostname", "web"), extra])
        };
        assert_eq!(check_request(PveVersion::V9, "POST", "/nodes/pve1/lxc", &create(("entrypoint", "/init"))), []);
        assert!(!check_request(PveVersion::V8, "POST", "/nodes/pve1/lxc", &create(("entrypoint", "/init"))).is_empty());
    }

    #[test]
    fn what_neither_version_knows_fails() {
        let refused = check_request(PveVersion::V9, "PUT", CONFIG, &params(&[("lxc.idmap", "u 0 100000 65536")]));
        assert!(
            refused.iter().any(|(v, p, m)| *v == PveVersion::V9
                && p.as_deref() == Some("lxc.idmap")
                && m.contains("not defined in schema")),
            "{refused:?}"
        );
        let refused = check_request(PveVersion::V8, "PUT", CONFIG, &params(&[("net0", "name=eth0,colour=blue")]));
        assert!(refused.iter().any(|(_, _, m)| m.contains("property 'colour' is not defined")), "{refused:?}");
        assert!(!check_request(PveVersion::V8, "GET", "/nodes/pve1/nonsense", &BTreeMap::new()).is_empty());
    }

    #[test]
    fn unreadable_lines_are_failures_and_readable_ones_are_counted() {
        let mut report = Report::default();
        check_line(Path::new("x.jsonl"), 1, "{not json", &mut report);
        check_line(Path::new("x.jsonl"), 2, r#"{"version":"7.4","method":"GET","path":"/version"}"#, &mut report);
        check_line(Path::new("x.jsonl"), 3, r#"{"version":"8.4.5","method":"GET","path":"/version"}"#, &mut report);
        assert_eq!((report.checked, report.failures.len()), (1, 2), "{report:?}");
        assert!(report.failures[1].to_string().starts_with("x.jsonl:2: GET /version: unknown version '7.4'"));
    }
}
