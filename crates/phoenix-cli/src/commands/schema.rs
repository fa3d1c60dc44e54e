//! `phoenix schema`: the JSON Schema of a configuration file.

use phoenix_config::FileKind;

use super::Outcome;
use crate::cli::{SchemaArgs, SchemaFile};
use crate::printer::Printer;

/// Runs `phoenix schema`.
pub fn run(printer: &Printer, args: &SchemaArgs) -> Outcome {
    let kind = match args.file {
        SchemaFile::Hypervisor => FileKind::Hypervisor,
        SchemaFile::Lxc => FileKind::Lxc,
        SchemaFile::Vm => FileKind::Vm,
    };
    printer.data(&phoenix_config::schema::schema_text(kind));
    Outcome::Success
}
