//! Phoenix configuration: the typed model of the three JSON files, a JSON parser that keeps
//! positions, the JSON Schema generated from the types, and validation that reports every problem
//! with file, line, column, JSON path and a hint.
//!
//! Nothing here contacts a backend or writes a file; the only reads are of paths the
//! configuration names, through the [`check::Filesystem`] trait.

pub mod check;
pub mod cloud_image;
pub mod diagnostic;
pub mod estate;
pub mod feature_values;
pub mod features;
pub mod generations;
pub mod graph;
pub mod json;
pub mod model;
pub mod net;
pub mod path;
mod repair;
pub mod schema;
pub mod scripts;
pub mod secret;
pub mod server_url;
pub mod source;
mod suggest;
pub mod validate;

pub use check::{Filesystem, RealFilesystem};
pub use diagnostic::{Code, Report, Severity};
pub use estate::Estate;
pub use source::{FileKind, Sources};
pub use validate::{Validation, load, validate, validate_with};
