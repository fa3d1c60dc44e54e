//! Diagnostics: what is wrong, where (file, line, column, JSON path), and how to fix it.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::path::JsonPath;
use crate::source::{FileKind, Span};

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The configuration is refused.
    Error,
    /// The intent is clear and Phoenix goes on, but the file should be written differently.
    Warning,
}

macro_rules! codes {
    ($($(#[doc = $doc:literal])* $variant:ident => $name:literal,)*) => {
        /// A stable identifier for each kind of diagnostic (shown as `error[code]`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        pub enum Code {
            $($(#[doc = $doc])* #[serde(rename = $name)] $variant,)*
        }

        impl Code {
            /// Every code, in documentation order.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The code as written in output.
            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $name,)* }
            }

            /// What the code means.
            pub fn description(self) -> &'static str {
                match self { $(Code::$variant => concat!($($doc),*).trim_ascii(),)* }
            }
        }
    };
}

codes! {
    /// A configuration file or the configuration directory cannot be read.
    Io => "io",
    /// The file is not valid JSON.
    Syntax => "syntax",
    /// The same key appears twice in one object (JSON readers silently keep the last one).
    DuplicateKey => "duplicate-key",
    /// A value has the wrong JSON type.
    WrongType => "wrong-type",
    /// A required field is missing.
    MissingField => "missing-field",
    /// A key that no generation of the format has.
    UnknownKey => "unknown-key",
    /// A key of an older generation of the format: accepted, with what Phoenix does with it.
    LegacyKey => "legacy-key",
    /// A value written the way an older generation wrote it, read in the current form.
    LegacyForm => "legacy-form",
    /// A section written inside another one instead of where it belongs.
    MisplacedSection => "misplaced-section",
    /// A number outside its allowed range, or a text or list of the wrong length.
    OutOfRange => "out-of-range",
    /// A value that is not one of the allowed values or does not have the required form.
    InvalidValue => "invalid-value",
    /// A control character (newline, carriage return, tab, NUL, ...) in a key or value: they
    /// would start lines of configuration files no one wrote, or name paths no one can type.
    ControlCharacter => "control-character",
    /// A guest ID that is not a number from 100 to 999999999.
    InvalidId => "invalid-id",
    /// Two guests with the same ID (also across containers and VMs), or a VM defined twice.
    DuplicateId => "duplicate-id",
    /// Two guests with the same IP address.
    DuplicateIp => "duplicate-ip",
    /// Two guests with the same MAC address.
    DuplicateMac => "duplicate-mac",
    /// Two guests with the same host name.
    DuplicateHostname => "duplicate-hostname",
    /// An IP address, CIDR or range that does not parse.
    InvalidAddress => "invalid-address",
    /// An address outside the subnet it must be in.
    OutsideSubnet => "outside-subnet",
    /// A guest that names a bridge, storage or pool nobody defines.
    UnknownReference => "unknown-reference",
    /// A clone source that does not exist or is not a template.
    CloneSource => "clone-source",
    /// A dependency on a guest that exists nowhere.
    UnknownDependency => "unknown-dependency",
    /// Clone and dependency edges that form a cycle.
    DependencyCycle => "dependency-cycle",
    /// A feature no library provides.
    UnknownFeature => "unknown-feature",
    /// A feature whose requirements (a GPU, another feature, nesting) are missing.
    FeatureRequirement => "feature-requirement",
    /// A malformed `gpu_assignment`.
    GpuAssignment => "gpu-assignment",
    /// A malformed `ports` entry.
    PortSyntax => "port-syntax",
    /// A health check that gives no probe, or several.
    HealthCheck => "health-check",
    /// A firewall that cannot work as written.
    Firewall => "firewall",
    /// A mount or volume problem: relative paths, unknown containers, two mounts at one path.
    Mount => "mount",
    /// A path written with `..` that leaves the place it is read from: a script outside the
    /// configuration directory, a template outside its storage's directory, a path inside a
    /// container above its `/`.
    PathEscape => "path-escape",
    /// A script or template file that does not exist.
    FileNotFound => "file-not-found",
    /// A password, token or key written inline where a secret reference is expected.
    InlineSecret => "inline-secret",
    /// Settings that contradict each other or are ignored.
    Conflict => "conflict",
    /// Backend settings that cannot work, or that are unsafe.
    Backend => "backend",
    /// Gateway routes that collide, or a gateway guest that does not exist.
    Gateway => "gateway",
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A related place, shown under a diagnostic (for example the first use of a duplicate).
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    /// The file.
    pub file: FileKind,
    /// The place in it.
    pub path: JsonPath,
    /// What is there.
    pub message: String,
    /// An exact place, where the path alone cannot say it (a repeated key).
    pub span: Option<Span>,
}

/// A problem found in the configuration, before it is placed on a line.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The kind of problem.
    pub code: Code,
    /// The file, or none for a problem with the directory.
    pub file: Option<FileKind>,
    /// Where in the file.
    pub path: JsonPath,
    /// Point at the member's key rather than its value.
    pub at_key: bool,
    /// What is wrong, quoting the values involved.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
    /// Related places.
    pub notes: Vec<Note>,
    /// The value is a secret: its text is never shown.
    pub conceal: bool,
    /// An exact place, where the path alone cannot say it (syntax errors, repeated keys).
    pub span: Option<Span>,
}

impl Diagnostic {
    /// An error at `path` in `file`.
    pub fn error(code: Code, file: FileKind, path: JsonPath, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(Severity::Error, code, Some(file), path, message.into())
    }

    /// A warning at `path` in `file`.
    pub fn warning(code: Code, file: FileKind, path: JsonPath, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(Severity::Warning, code, Some(file), path, message.into())
    }

    /// An error about the configuration directory as a whole.
    pub fn directory_error(code: Code, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(Severity::Error, code, None, JsonPath::root(), message.into())
    }

    fn new(severity: Severity, code: Code, file: Option<FileKind>, path: JsonPath, message: String) -> Diagnostic {
        Diagnostic {
            severity,
            code,
            file,
            path,
            at_key: false,
            message,
            hint: None,
            notes: Vec::new(),
            conceal: false,
            span: None,
        }
    }

    /// Adds a hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Diagnostic {
        self.hint = Some(hint.into());
        self
    }

    /// Points at the member's key instead of its value.
    pub fn at_key(mut self) -> Diagnostic {
        self.at_key = true;
        self
    }

    /// Adds a related place.
    pub fn note(mut self, file: FileKind, path: JsonPath, message: impl Into<String>) -> Diagnostic {
        self.notes.push(Note { file, path, message: message.into(), span: None });
        self
    }

    /// Places the diagnostic at an exact span instead of its path.
    pub fn at_span(mut self, span: Span) -> Diagnostic {
        self.span = Some(span);
        self
    }

    /// Adds a related place given by its exact span.
    pub fn note_at(mut self, file: FileKind, path: JsonPath, span: Span, message: impl Into<String>) -> Diagnostic {
        self.notes.push(Note { file, path, message: message.into(), span: Some(span) });
        self
    }

    /// Marks the value as a secret that must never be shown.
    pub fn conceal(mut self) -> Diagnostic {
        self.conceal = true;
        self
    }
}

/// A place on a line of a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Location {
    /// The file as the user named it.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// The JSON path.
    pub path: String,
    /// The line's text, with secrets masked, for display.
    #[serde(skip)]
    pub source_line: String,
    /// Where the marker under `source_line` starts (it differs from `column` when a secret
    /// before it is masked).
    #[serde(skip)]
    pub marker_column: usize,
    /// How many characters from `marker_column` to underline.
    #[serde(skip)]
    pub width: usize,
}

/// A related place, located.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocatedNote {
    /// Where it is.
    #[serde(flatten)]
    pub location: Location,
    /// What is there.
    pub message: String,
}

/// A diagnostic placed on a line, ready to print.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Error or warning.
    pub severity: Severity,
    /// The kind of problem.
    pub code: Code,
    /// Where, when the problem is in a file.
    #[serde(flatten)]
    pub location: Option<Location>,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// Related places.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<LocatedNote>,
}
