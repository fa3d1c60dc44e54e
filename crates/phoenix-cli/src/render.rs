//! Diagnostics as text: `error[code]: message`, the place, the line with a marker, hints and notes.

use std::fmt::Write;

use phoenix_backend::{Mount, Value};
use phoenix_config::diagnostic::{Location, Report, Severity};

use crate::printer::styles::{BOLD, ERROR, GUTTER, WARNING};

/// Renders one diagnostic, ending with a blank line.
pub fn diagnostic(r: &Report, verbose: bool) -> String {
    let mut s = String::new();
    let (label, style) = match r.severity {
        Severity::Error => ("error", ERROR),
        Severity::Warning => ("warning", WARNING),
    };
    let _ = writeln!(s, "{style}{label}[{}]{style:#}{BOLD}: {}{BOLD:#}", r.code, r.message);
    let width = r.location.as_ref().map_or(1, |l| l.line.to_string().len());
    let pad = " ".repeat(width);
    if let Some(l) = &r.location {
        let _ = writeln!(s, "{pad}{GUTTER}-->{GUTTER:#} {}{}", place(l), at_path(&l.path));
        let _ = writeln!(s, "{pad} {GUTTER}|{GUTTER:#}");
        let _ = writeln!(s, "{GUTTER}{:>width$} |{GUTTER:#} {}", l.line, l.source_line);
        let marker = format!("{}{}", " ".repeat(l.marker_column - 1), "^".repeat(l.width.min(60)));
        let _ = writeln!(s, "{pad} {GUTTER}|{GUTTER:#} {style}{marker}{style:#}");
    }
    if let Some(h) = &r.hint {
        let _ = writeln!(s, "{pad} {GUTTER}={GUTTER:#} {BOLD}hint{BOLD:#}: {h}");
    }
    if verbose {
        let _ = writeln!(s, "{pad} {GUTTER}={GUTTER:#} {BOLD}{}{BOLD:#}: {}", r.code, r.code.description());
    }
    for n in &r.notes {
        let _ = writeln!(
            s,
            "{pad} {GUTTER}={GUTTER:#} {BOLD}note{BOLD:#}: {}: {}{}",
            n.message,
            place(&n.location),
            at_path(&n.location.path)
        );
    }
    s.push('\n');
    s
}

fn place(l: &Location) -> String {
    format!("{}:{}:{}", l.file.display(), l.line, l.column)
}

/// ` at $.path`, or nothing for the root of a file.
fn at_path(path: &str) -> String {
    if path == "$" { String::new() } else { format!(" at {path}") }
}

/// A plan for people, like `terraform plan`: each guest with work, its steps and their reasons.
pub fn plan_text(plan: &phoenix_plan::Plan) -> String {
    use phoenix_plan::{Action, LifecycleState};

    use crate::printer::styles::{CHANGE, OK};
    let mut s = String::new();
    for g in plan.guests.iter().filter(|g| !g.steps.is_empty()) {
        let creating = g.steps.iter().any(|st| matches!(st.action, Action::Create { .. }));
        let (mark, style) = if creating { ("+", OK) } else { ("~", CHANGE) };
        let kind = match g.kind {
            phoenix_backend::GuestKind::Lxc => "container",
            phoenix_backend::GuestKind::Vm => "VM",
        };
        let _ = writeln!(
            s,
            "{style}{mark}{style:#} {BOLD}{} {}{BOLD:#} ({kind}): {} → {}",
            g.id,
            g.name,
            g.state,
            LifecycleState::Completed
        );
        s.push_str(&steps_text(&g.steps));
        for f in &g.files {
            let _ = writeln!(s, "    {} changes:", f.path);
            for line in f.diff.lines() {
                let style = match line.chars().next() {
                    Some('+') => OK,
                    Some('-') => crate::printer::styles::ERROR,
                    _ => anstyle::Style::new(),
                };
                let _ = writeln!(s, "      {style}{line}{style:#}");
            }
        }
    }
    let create = plan
        .guests
        .iter()
        .filter(|g| g.steps.iter().any(|st| matches!(st.action, phoenix_plan::Action::Create { .. })))
        .count();
    let change = plan.guests_to_change() - create;
    let same = plan.guests.len() - plan.guests_to_change();
    if plan.is_empty() && !plan.issues.is_empty() {
        // Not "No changes": the issues that follow stop the plan.
        let _ = writeln!(s, "No steps: the plan has {} issue(s), below.", plan.issues.len());
    } else if plan.is_empty() {
        let _ = writeln!(s, "No changes: all {same} guest(s) match the configuration.");
    } else {
        let _ = writeln!(s, "\nPlan: {create} to create, {change} to change, {same} unchanged.");
    }
    for note in &plan.notes {
        let _ = writeln!(s, "note: {note}");
    }
    if !plan.unmanaged.is_empty() {
        let ids: Vec<String> = plan.unmanaged.iter().map(ToString::to_string).collect();
        let _ = writeln!(s, "Not in the configuration, never touched: {}.", ids.join(", "));
    }
    s
}

/// A guest's steps as `plan` shows them: each change of a configure step on its own line
/// (`~ field: old → new (live)`, `- field: old → (removed)`), every other step with its reason.
pub fn steps_text(steps: &[phoenix_plan::Step]) -> String {
    use phoenix_plan::Action;

    use crate::printer::styles::{CHANGE, DIM, OK};
    let mut s = String::new();
    for st in steps {
        let (what, style) = match &st.action {
            Action::Create { source } => (
                match source {
                    phoenix_backend::CreateSource::Template(t) => format!("create from {t}"),
                    phoenix_backend::CreateSource::Clone { source, snapshot } if snapshot.is_empty() => {
                        format!("clone the template {source}")
                    }
                    phoenix_backend::CreateSource::Clone { source, snapshot } => {
                        format!("clone {source} at snapshot {snapshot}")
                    }
                },
                OK,
            ),
            Action::Configure { changes } => {
                for c in changes {
                    let effect = match c.effect {
                        phoenix_backend::ChangeEffect::Live => "live",
                        phoenix_backend::ChangeEffect::Restart => "at restart",
                        phoenix_backend::ChangeEffect::Recreate => "REPLACES THE GUEST",
                    };
                    let (mark, new) = match &c.new {
                        Some(v) => ("~", v.to_string()),
                        None => ("-", "(removed)".to_string()),
                    };
                    let _ = writeln!(
                        s,
                        "    {CHANGE}{mark}{CHANGE:#} {}: {} → {new} {DIM}({effect}){DIM:#}",
                        c.field,
                        c.old.as_ref().map_or_else(|| "(unset)".to_string(), ToString::to_string),
                    );
                }
                let volume_removed = changes
                    .iter()
                    .any(|c| c.is_removal() && c.old.as_ref().and_then(Value::as_mount).is_some_and(Mount::is_volume));
                if volume_removed {
                    let _ = writeln!(
                        s,
                        "      {DIM}a removed volume is detached and kept with its data, never deleted{DIM:#}"
                    );
                }
                continue;
            }
            Action::Restart => (st.action.describe(), ERROR),
            Action::HealthCheck => (st.action.describe(), DIM),
            Action::Start
            | Action::NewHostKeys
            | Action::Customize { .. }
            | Action::UpdateSnapshot { .. }
            | Action::Snapshot { .. }
            | Action::MakeTemplate => (st.action.describe(), CHANGE),
        };
        let _ = writeln!(s, "    {style}>{style:#} {what} {DIM}— {}{DIM:#}", st.reason);
    }
    s
}

/// What `phoenix adopt` does, guest by guest: each feature's and the script's marker with how
/// it was decided, the mark, then the plan the guest has once adopted (its differences from the
/// configuration, shown as `plan` shows them).
pub fn adoption_text(survey: &phoenix_engine::adopt::Survey) -> String {
    use phoenix_engine::adopt::Verdict;

    use crate::printer::styles::{CHANGE, DIM, OK};
    let mut s = String::new();
    for a in &survey.adopt {
        let kind = match a.kind {
            phoenix_backend::GuestKind::Lxc => "container",
            phoenix_backend::GuestKind::Vm => "VM",
        };
        let power = match a.power {
            phoenix_backend::PowerState::Running => "running",
            phoenix_backend::PowerState::Stopped => "stopped",
        };
        let _ = writeln!(s, "{CHANGE}~{CHANGE:#} {BOLD}{} {}{BOLD:#} ({kind}, {power}): adopt", a.id, a.name);
        for d in &a.customizations {
            let (what, style) = match d.verdict {
                Verdict::Recorded => ("record", OK),
                Verdict::AlreadyRecorded => ("keep", DIM),
                Verdict::NotRecorded => ("not recorded:", CHANGE),
            };
            let _ = writeln!(s, "    {style}>{style:#} {what} {} {DIM}— {}{DIM:#}", d.key, d.why);
        }
        let _ = writeln!(
            s,
            "    {OK}>{OK:#} mark as Phoenix's {DIM}— nothing else changes: not recreated, stopped or restarted{DIM:#}"
        );
        if a.then.steps.is_empty() {
            let _ = writeln!(s, "  then: nothing to do, it matches its configuration");
        } else {
            let _ = writeln!(s, "  then, at the next apply (as `phoenix plan` will show):");
            s.push_str(&steps_text(&a.then.steps));
        }
    }
    s
}

/// A table with a header, columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        padded.join("  ").trim_end().to_string() + "\n"
    };
    let mut s = format!("{BOLD}{}{BOLD:#}", line(header.to_vec()));
    for r in rows {
        s.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    s
}

#[cfg(test)]
mod tests {
    use phoenix_backend::{ChangeEffect, GuestKind};
    use phoenix_plan::{Action, GuestPlan, LifecycleState, Plan, PlannedChange, Step};

    #[test]
    fn a_removed_setting_reads_as_removed() {
        let change = |field: &str, old: &str, new: Option<&str>| {
            let field = phoenix_backend::Field::from_name(field).expect("a field");
            PlannedChange {
                old: Some(field.parse(old).expect("a value")),
                new: new.map(|n| field.parse(n).expect("a value")),
                field,
                effect: ChangeEffect::Restart,
            }
        };
        let plan = Plan {
            guests: vec![GuestPlan {
                files: Vec::new(),
                id: 950,
                name: "vllm".into(),
                kind: GuestKind::Lxc,
                state: LifecycleState::Created,
                steps: vec![Step {
                    action: Action::Configure {
                        changes: vec![
                            change("cores", "2", Some("4")),
                            change("mount:/models", "bind:/srv/models", None),
                            change("mount:/data", "volume:local-zfs:8", None),
                        ],
                    },
                    reason: "r".into(),
                }],
                needs: Vec::new(),
            }],
            ..Plan::default()
        };
        let text = super::plan_text(&plan);
        assert!(text.contains("~\u{1b}[0m cores: 2 → 4 "), "{text:?}");
        assert!(text.contains("-\u{1b}[0m mount:/models: bind:/srv/models → (removed) "), "{text:?}");
        assert!(text.contains("a removed volume is detached and kept with its data, never deleted"), "{text:?}");
    }

    #[test]
    fn a_plan_stopped_by_issues_never_reads_as_no_changes() {
        let issue = phoenix_plan::PlanIssue {
            guest: 734,
            message: "734 exists but was not created by Phoenix".into(),
            hint: "adopt it".into(),
        };
        let plan = Plan { issues: vec![issue], ..Plan::default() };
        let text = super::plan_text(&plan);
        assert!(!text.contains("No changes") && text.contains("No steps: the plan has 1 issue(s), below."), "{text}");
        assert!(super::plan_text(&Plan::default()).contains("No changes"));
    }
}
