//! Progress of an apply: on a terminal, one line per guest showing its lifecycle state and current
//! step, redrawn in place (each cut to the terminal's width: a line the terminal wraps would
//! throw the redraw off); elsewhere, nothing until the summary (retries with `-v`).

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use phoenix_backend::GuestId;
use phoenix_engine::{GuestOutcome, Reporter};
use phoenix_plan::{Action, LifecycleState, Step};

use crate::printer::Printer;
use crate::printer::styles::{DIM, ERROR, OK};

/// Draws progress through the printer.
pub struct Progress<'a> {
    printer: &'a Printer,
    names: BTreeMap<GuestId, String>,
    lines: Mutex<Lines>,
}

#[derive(Default)]
struct Lines {
    text: BTreeMap<GuestId, String>,
    drawn: usize,
}

impl<'a> Progress<'a> {
    /// Progress for the guests of a plan that have work.
    pub fn new(printer: &'a Printer, plan: &phoenix_plan::Plan) -> Progress<'a> {
        let names = plan.guests.iter().filter(|g| !g.steps.is_empty()).map(|g| (g.id, g.name.clone())).collect();
        Progress { printer, names, lines: Mutex::new(Lines::default()) }
    }

    fn set(&self, guest: GuestId, text: String) {
        if !self.printer.progress {
            return;
        }
        let mut lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        lines.text.insert(guest, text);
        let mut out = String::new();
        if lines.drawn > 0 {
            out.push_str(&format!("\x1b[{}A", lines.drawn));
        }
        let width = terminal_width();
        for (id, line) in &lines.text {
            let name = self.names.get(id).map_or("", String::as_str);
            out.push_str(&format!("\x1b[2K{}\n", fit(&format!("{id:>6} {name:<20} {line}"), width)));
        }
        lines.drawn = lines.text.len();
        self.printer.error_text(&out);
    }
}

/// The width of the terminal progress is drawn on (standard error), or 80 when it cannot tell.
fn terminal_width() -> usize {
    terminal_size::terminal_size_of(std::io::stderr()).map_or(80, |(w, _)| usize::from(w.0))
}

/// The line cut to fewer than `width` visible characters (escape sequences take no room and are
/// kept whole; a cut line ends with a style reset).
fn fit(line: &str, width: usize) -> String {
    let room = width.saturating_sub(1);
    let mut out = String::with_capacity(line.len());
    let mut visible = 0;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            out.push(c);
            // A CSI sequence runs to its final byte, a letter.
            for d in chars.by_ref() {
                out.push(d);
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
            continue;
        }
        if visible == room {
            out.push_str("\x1b[0m");
            return out;
        }
        out.push(c);
        visible += 1;
    }
    out
}

fn describe(action: &Action) -> String {
    match action {
        Action::Create { .. } => "creating".into(),
        Action::Configure { changes } => {
            format!("configuring {}", changes.iter().map(|c| c.field.to_string()).collect::<Vec<_>>().join(", "))
        }
        Action::Start => "starting".into(),
        Action::Restart => "restarting".into(),
        Action::NewHostKeys => "making its own SSH host keys".into(),
        Action::Customize { key, .. } => format!("running {key}"),
        Action::HealthCheck => "waiting until healthy".into(),
        Action::Snapshot { name } => format!("taking snapshot {name}"),
        Action::UpdateSnapshot { .. } => "taking a snapshot before the update".into(),
        Action::MakeTemplate => "making it a template".into(),
    }
}

impl Reporter for Progress<'_> {
    fn state(&self, guest: GuestId, state: LifecycleState, step: Option<&Step>) {
        let step = step.map(|s| describe(&s.action)).unwrap_or_default();
        self.set(guest, format!("{DIM}{state:<11}{DIM:#} {step}"));
    }

    fn finished(&self, guest: GuestId, outcome: &GuestOutcome, took: Duration) {
        let text = match outcome {
            GuestOutcome::Unchanged => format!("{OK}unchanged{OK:#}"),
            GuestOutcome::Created => format!("{OK}created{OK:#} in {:.1}s", took.as_secs_f64()),
            GuestOutcome::Changed => format!("{OK}changed{OK:#} in {:.1}s", took.as_secs_f64()),
            GuestOutcome::Failed(_) => format!("{ERROR}failed{ERROR:#}"),
            GuestOutcome::RolledBack(_) => format!("{ERROR}failed, rolled back{ERROR:#}"),
            GuestOutcome::Skipped(why) => format!("{DIM}skipped: {why}{DIM:#}"),
            GuestOutcome::NotStarted => format!("{DIM}not started{DIM:#}"),
        };
        if self.names.contains_key(&guest) {
            self.set(guest, text);
        }
    }

    fn note(&self, guest: GuestId, message: &str) {
        if self.printer.verbose > 0 && !self.printer.progress {
            self.printer.info_text(&format!("{guest}: {message}\n"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fit;

    #[test]
    fn a_line_is_cut_to_the_width_counting_only_what_shows() {
        assert_eq!(fit("abcdef", 80), "abcdef");
        assert_eq!(fit("abcdef", 4), "abc\x1b[0m");
        // The style codes take no room and are not cut in half.
        assert_eq!(fit("\x1b[2mabc\x1b[0mdef", 5), "\x1b[2mabc\x1b[0md\x1b[0m");
        assert_eq!(fit("\x1b[2mab\x1b[0m", 3), "\x1b[2mab\x1b[0m");
        assert_eq!(fit("héllo wörld", 6), "héllo\x1b[0m");
    }
}
