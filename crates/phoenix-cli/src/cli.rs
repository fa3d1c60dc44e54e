//! The command line: global options and subcommands.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Default configuration directory, the one the shell version used.
pub const DEFAULT_CONFIG_DIR: &str = "/usr/local/phoenix_hypervisor/etc";

/// Phoenix turns a directory of JSON files into a running Proxmox VE estate (or local LXC
/// containers): host set up, guests created, configured, customized and health-checked,
/// idempotently and in dependency order, with a plan shown before anything changes.
#[derive(Debug, Parser)]
#[command(name = "phoenix", version, propagate_version = true, max_term_width = 100)]
#[command(
    after_help = "Exit codes: 0 success; 1 invalid configuration or failed operation; 2 usage error or a command that is not implemented yet."
)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Directory holding phoenix_hypervisor_config.json, phoenix_lxc_configs.json and phoenix_vm_configs.json.
    #[arg(short = 'c', long, global = true, env = "PHOENIX_CONFIG_DIR", default_value = DEFAULT_CONFIG_DIR, value_name = "DIR")]
    pub config_dir: PathBuf,
    /// More detail (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// When to use colours (NO_COLOR in the environment also turns them off).
    #[arg(long, global = true, value_enum, default_value_t = ColorMode::Auto, value_name = "WHEN")]
    pub color: ColorMode,
    /// Do not draw progress lines.
    #[arg(long, global = true)]
    pub no_progress: bool,
    /// Directory of the apply locks, one per backend.
    #[arg(
        long,
        global = true,
        env = "PHOENIX_LOCK_DIR",
        default_value = "/run/phoenix",
        value_name = "DIR",
        hide_short_help = true
    )]
    pub lock_dir: PathBuf,
    /// Output for people (text) or programs (json), on stdout.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Text, value_name = "FORMAT")]
    pub output: OutputFormat,
}

/// When to use colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorMode {
    /// When writing to a terminal and NO_COLOR is not set.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// How results are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// For people.
    Text,
    /// One JSON document, for programs.
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check every configuration file and report every problem, with file, line, column, JSON path and a hint.
    ///
    /// Never contacts a backend and never writes a file. Exits 1 when there is an error; warnings alone exit 0.
    Validate(WorkArgs),
    /// Show what apply would change, guest by guest, and why.
    ///
    /// Reads the backend, changes nothing. With --detailed-exitcode: 0 nothing to do, 2 changes
    /// pending, 1 error.
    Plan(PlanArgs),
    /// Create, configure, customize and health-check the guests so they match the configuration.
    ///
    /// Executes exactly the plan it shows: guests start once everything they need is completed
    /// and healthy; independent guests run at once. One apply at a time per backend.
    Apply(ApplyArgs),
    /// Show each guest's lifecycle state as the backend sees it.
    Status(WorkArgs),
    /// Destroy guests (all configured ones when no ID is given), dependents first.
    ///
    /// Refuses to destroy a template that existing guests were cloned from unless --force, and asks
    /// for confirmation on a terminal (--yes to skip). Guests Phoenix did not create are never touched.
    Destroy(DestroyArgs),
    /// Make guests Phoenix did not create (built by the shell version, or by hand) Phoenix's, as they are.
    ///
    /// For each guest given (without IDs: every configured guest that exists on the backend but is
    /// not Phoenix's) it shows how the guest differs from its configuration (the changes the next
    /// plan will make), then marks it as Phoenix's without recreating, stopping, restarting or
    /// reconfiguring it. It records a feature or the application script as done only where the
    /// guest shows it ran: base_setup in a running guest; docker, nvidia, ollama and vllm when
    /// their probe succeeds inside the guest (`command -v docker`, `command -v nvidia-smi`,
    /// `command -v ollama`, `command -v vllm` or `python3 -c 'import vllm'`). Everything else
    /// runs on the next apply, unless --assume-customized; nothing is recorded in a stopped guest.
    ///
    /// An ID that is not configured or does not exist on the backend is refused (exit 1), and so is
    /// a guest whose configuration asks for what cannot change in place (its storage, say); then
    /// nothing is adopted. A guest Phoenix manages already is left as it is (exit 0).
    Adopt(AdoptArgs),
    /// Draw the guests' clone and dependency graph (an arrow points to what a guest needs first).
    Graph(GraphArgs),
    /// List the features guests can name, with their parameters: the built-in ones, overridden by
    /// and added to from the features directory.
    ///
    /// A parameter's value comes from the guest's `feature_settings.<feature>.<name>`, the
    /// guest's own key of that name, the hypervisor file's `feature_settings`, the keys its
    /// `from` names, then its default. With a name, only that feature; with --script, the script
    /// it runs (a start for your own version in <features-dir>/<name>/install.sh).
    Features(FeaturesArgs),
    /// Set up the host from phoenix_hypervisor_config.json, module by module, as a plan first.
    ///
    /// Modules, in order: repositories, timezone, users, zfs, storage, nfs, samba, firewall,
    /// apparmor, subids (nvidia is not implemented yet; the plan says when the
    /// configuration asks for them). A disk that holds partitions or signatures is used for a
    /// ZFS pool only when --allow-wipe names it. Each module reads the host, plans steps with their reasons
    /// (the files and commands it touches) and applies them; a second apply does nothing. Files
    /// Phoenix does not own (smb.conf, authorized_keys, /etc/subuid) are edited only in marked
    /// blocks, the original kept as <file>.phoenix-orig. Secrets are read at run time and never
    /// printed.
    ///
    /// Exit codes: 0 done, or nothing to do (with `plan --detailed-exitcode`: 0 nothing to do,
    /// 2 changes pending); 1 invalid configuration, a module could not read or plan, or a step
    /// failed (the steps before it stay applied; run it again); 2 usage error.
    #[command(subcommand)]
    SetupHypervisor(SetupCommand),
    /// Print the JSON Schema of a configuration file, for editors (files may point at it with "$schema").
    Schema(SchemaArgs),
    /// Print a shell completion script.
    Completions(CompletionsArgs),
    /// Build OS templates for the local LXC backend.
    #[command(subcommand)]
    Template(TemplateCommand),
    /// Work on the configuration files themselves.
    #[command(subcommand)]
    Config(ConfigCommand),
}

/// What `phoenix setup-hypervisor` does.
#[derive(Debug, Subcommand)]
pub enum SetupCommand {
    /// Show what apply would change on the host, module by module, and why. Changes nothing.
    Plan(SetupArgs),
    /// Make the host match the configuration: the plan, then its steps in order.
    Apply(SetupApplyArgs),
}

/// Options of `setup-hypervisor plan`.
#[derive(Debug, Args)]
pub struct SetupArgs {
    /// Only this module.
    #[arg(long, value_name = "MODULE", value_parser = clap::builder::PossibleValuesParser::new(phoenix_host::MODULES.iter().copied()))]
    pub only: Option<String>,
    /// Work on the tree below DIR as if it were `/` (an image being prepared; tests).
    #[arg(long, value_name = "DIR", default_value = "/", hide_short_help = true)]
    pub root: PathBuf,
    /// Exit 0 when there is nothing to do, 2 when changes are pending, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// A disk the zfs module may wipe (its partitions and signatures destroyed) to create a
    /// configured pool on it; without it, such a disk is refused. Repeat for several disks.
    #[arg(long, value_name = "DISK")]
    pub allow_wipe: Vec<String>,
}

/// Options of `setup-hypervisor apply`.
#[derive(Debug, Args)]
pub struct SetupApplyArgs {
    /// Only this module.
    #[arg(long, value_name = "MODULE", value_parser = clap::builder::PossibleValuesParser::new(phoenix_host::MODULES.iter().copied()))]
    pub only: Option<String>,
    /// Work on the tree below DIR as if it were `/` (an image being prepared; tests).
    #[arg(long, value_name = "DIR", default_value = "/", hide_short_help = true)]
    pub root: PathBuf,
    /// Show the plan and change nothing: the host is only read.
    #[arg(long)]
    pub dry_run: bool,
    /// A disk the zfs module may wipe (its partitions and signatures destroyed) to create a
    /// configured pool on it; without it, such a disk is refused. Repeat for several disks.
    #[arg(long, value_name = "DISK")]
    pub allow_wipe: Vec<String>,
}

/// What `phoenix config` does.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Rewrite files of an older generation of the format in the current form.
    ///
    /// Older forms (a v0 `features` string, `clone_from_template_ctid`, `static_ip`, samba paths
    /// and options written as strings, ZFS properties as objects, `firewall` inside
    /// `shared_volumes`, ...) are rewritten as `validate` reads them; everything else is kept as
    /// written, keys of older generations included. Shows the diff first and asks on a terminal
    /// (--yes to skip); each file changed is kept beside it as `<file>.<time>.bak`.
    Upgrade(UpgradeArgs),
}

/// Options of `config upgrade`.
#[derive(Debug, Args)]
pub struct UpgradeArgs {
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Show the diff, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Templates `phoenix` can build.
#[derive(Debug, Subcommand)]
pub enum TemplateCommand {
    /// A small offline template from the host's static busybox (package busybox-static): a shell,
    /// core tools, httpd and wget. Enough for the quickstart and the tests; no network needed.
    Busybox {
        /// Where to write the tarball (`.tar.gz`), e.g. <storage>/template/cache/phoenix-busybox_amd64.tar.gz.
        out: PathBuf,
        /// The busybox binary to use; it must be statically linked.
        #[arg(long, default_value = "/bin/busybox")]
        busybox: PathBuf,
    },
    /// A Debian root filesystem built on this machine with debootstrap (variant minbase, as
    /// root; package debootstrap), with a minimal init that starts the System V services, so the
    /// containers made from it need no network. Reused when built before from the same inputs
    /// (a stamp `<OUT>.inputs` beside it); written under a temporary name, then renamed.
    Debian {
        /// Where to write the tarball (`.tar.zst`, `.tar.gz` or `.tar.xz`), e.g.
        /// <storage>/template/cache/debian-12-phoenix_amd64.tar.zst.
        out: PathBuf,
        /// The Debian suite.
        #[arg(long, default_value = "bookworm")]
        suite: String,
        /// The archive to download from.
        #[arg(long, default_value = "http://deb.debian.org/debian")]
        mirror: String,
        /// Extra packages, comma-separated or repeated, e.g. --include nginx-light,curl.
        #[arg(long, value_name = "PACKAGES")]
        include: Vec<String>,
    },
}

/// Where features come from: `validate` and the commands that read the backend.
#[derive(Debug, Args)]
pub struct WorkArgs {
    /// Directory of features, one directory each with `feature.json` and `install.sh`, added to (and overriding) the built-in ones [default: <config-dir>/features].
    #[arg(long, value_name = "DIR")]
    pub features_dir: Option<PathBuf>,
}

/// Options of `features`.
#[derive(Debug, Args)]
pub struct FeaturesArgs {
    /// Only this feature.
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
    /// Print the feature's script instead of its description.
    #[arg(long, requires = "name")]
    pub script: bool,
    /// Where features come from.
    #[command(flatten)]
    pub work: WorkArgs,
}

/// Options of the commands that change guests.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Seconds to wait for another apply on the same backend to finish (default: fail at once).
    #[arg(long, default_value_t = 0, value_name = "SECONDS")]
    pub wait: u64,
    /// Where features come from.
    #[command(flatten)]
    pub work: WorkArgs,
}

/// Options of `plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Only these guests and what they depend on.
    #[arg(long = "target", value_name = "ID")]
    pub targets: Vec<u32>,
    /// Exit 0 when there is nothing to do, 2 when changes are pending, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Where features come from.
    #[command(flatten)]
    pub work: WorkArgs,
}

/// Options of `apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Only these guests and what they depend on.
    #[arg(long = "target", value_name = "ID")]
    pub targets: Vec<u32>,
    /// Guests worked on at once.
    #[arg(long, short = 'j', default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: u16,
    /// Guests worked on at once on one cluster node.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    pub per_node: u16,
    /// After a failure, go on with guests that do not depend on the failed one.
    #[arg(long)]
    pub keep_going: bool,
    /// Print what would run, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Waiting for the apply lock, and where features come from.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Options of `destroy`.
#[derive(Debug, Args)]
pub struct DestroyArgs {
    /// Guests to destroy (default: every configured guest that exists).
    #[arg(value_name = "ID")]
    pub ids: Vec<u32>,
    /// Also destroy templates that other guests were cloned from.
    #[arg(long)]
    pub force: bool,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Print what would be destroyed, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Waiting for the apply lock, and where features come from.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Options of `adopt`.
#[derive(Debug, Args)]
pub struct AdoptArgs {
    /// Guests to adopt (default: every configured guest on the backend that is not Phoenix's).
    #[arg(value_name = "ID")]
    pub ids: Vec<u32>,
    /// Record every feature and the application script as done, without evidence from the guest.
    #[arg(long)]
    pub assume_customized: bool,
    /// Show what would be adopted and recorded, and change nothing (the probes still run inside
    /// the guests: they only look).
    #[arg(long)]
    pub dry_run: bool,
    /// Waiting for the apply lock, and where features come from.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Options of `graph`.
#[derive(Debug, Args)]
pub struct GraphArgs {
    /// Drawing format.
    #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
    pub format: GraphFormat,
}

/// Graph drawing formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    /// A Mermaid flowchart (renders on GitHub and GitLab).
    Mermaid,
    /// Graphviz DOT (`dot -Tsvg`).
    Dot,
}

/// Options of `schema`.
#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Which file's schema.
    #[arg(value_enum)]
    pub file: SchemaFile,
}

/// The files with a schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemaFile {
    /// phoenix_hypervisor_config.json
    Hypervisor,
    /// phoenix_lxc_configs.json
    Lxc,
    /// phoenix_vm_configs.json
    Vm,
}

/// Options of `completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}
