//! A stand-in for `pvesh` on a node of the PVE test double: `pvesh-double get|create|set|delete
//! <api path> [--name=value]... --output-format json`, sent to the double that the environment
//! names (`PveDouble::pvesh_env`) as the node's root. See `phoenix_pve_double::pvesh`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args_os().skip(1).map(|a| a.to_string_lossy().into_owned()).collect();
    let code = phoenix_pve_double::pvesh::run(
        &args,
        &|k| std::env::var(k).ok(),
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    ExitCode::from(code)
}
