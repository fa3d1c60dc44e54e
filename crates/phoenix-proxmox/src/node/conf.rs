//! `/etc/pve/lxc/<id>.conf`, section by section. The file holds the live configuration, then one
//! section per snapshot (`[name]`) and possibly `[pending]`. Settings appended at the end of the
//! file land in the last snapshot's section, where Proxmox ignores them: this writer edits only
//! the live section, keeps every other byte as it was, and is verified by reading back.

use std::fmt;

/// One line of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    /// `key: value`
    Entry { key: String, value: String, raw: String },
    /// A comment, a blank line, or anything else, kept as it is.
    Other(String),
}

/// A section: the live configuration (no header), a snapshot, or `[pending]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Section {
    /// `None` for the live section.
    name: Option<String>,
    /// The header line as written.
    header: Option<String>,
    lines: Vec<Line>,
}

/// A parsed configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfFile {
    sections: Vec<Section>,
    trailing_newline: bool,
}

/// Why a file does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ConfError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// A raw `lxc.*` line, which Proxmox reads as `lxc.key: value` or `lxc.key = value` (a hand
/// edit, or LXC's own form): its key and value. The value may hold `:` (`c 195:* rwm`).
fn lxc_entry(raw: &str) -> Option<(&str, &str)> {
    let t = raw.trim_start();
    if !t.starts_with("lxc.") {
        return None;
    }
    let end = t.find(|c: char| !(c.is_ascii_alphanumeric() || "_-.".contains(c)))?;
    let (key, rest) = t.split_at(end);
    let rest = rest.trim_start();
    let value = rest.strip_prefix(':').or_else(|| rest.strip_prefix('='))?;
    Some((key, value.trim()))
}

impl ConfFile {
    /// Parses a file.
    pub fn parse(text: &str) -> Result<ConfFile, ConfError> {
        let mut sections = vec![Section { name: None, header: None, lines: Vec::new() }];
        for (i, raw) in text.lines().enumerate() {
            let trimmed = raw.trim();
            if trimmed.starts_with('[') {
                let name =
                    trimmed.strip_prefix('[').and_then(|t| t.strip_suffix(']')).filter(|n| !n.is_empty()).ok_or_else(
                        || ConfError { line: i + 1, message: format!("{raw:?} is not a section header") },
                    )?;
                sections.push(Section {
                    name: Some(name.to_string()),
                    header: Some(raw.to_string()),
                    lines: Vec::new(),
                });
                continue;
            }
            if let Some((key, value)) = lxc_entry(raw) {
                if let Some(last) = sections.last_mut() {
                    last.lines.push(Line::Entry {
                        key: key.to_string(),
                        value: value.to_string(),
                        raw: raw.to_string(),
                    });
                }
                continue;
            }
            let line = match raw.split_once(':') {
                Some((key, value))
                    if !trimmed.starts_with('#') && !key.trim().is_empty() && !key.contains(char::is_whitespace) =>
                {
                    Line::Entry { key: key.to_string(), value: value.trim().to_string(), raw: raw.to_string() }
                }
                _ if trimmed.is_empty() || trimmed.starts_with('#') => Line::Other(raw.to_string()),
                _ => return Err(ConfError { line: i + 1, message: format!("{raw:?} is not `key: value`") }),
            };
            if let Some(last) = sections.last_mut() {
                last.lines.push(line);
            }
        }
        Ok(ConfFile { sections, trailing_newline: text.ends_with('\n') || text.is_empty() })
    }

    fn live(&self) -> &Section {
        &self.sections[0]
    }

    /// Values of a key in the live section, in order (raw `lxc.*` keys may repeat).
    pub fn live_values(&self, key: &str) -> Vec<&str> {
        self.live()
            .lines
            .iter()
            .filter_map(|l| match l {
                Line::Entry { key: k, value, .. } if k == key => Some(value.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Values of a key in a snapshot's section.
    pub fn snapshot_values(&self, snapshot: &str, key: &str) -> Vec<&str> {
        self.sections
            .iter()
            .filter(|s| s.name.as_deref() == Some(snapshot))
            .flat_map(|s| &s.lines)
            .filter_map(|l| match l {
                Line::Entry { key: k, value, .. } if k == key => Some(value.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Names of the sections after the live one (snapshots and `pending`).
    pub fn section_names(&self) -> Vec<&str> {
        self.sections.iter().filter_map(|s| s.name.as_deref()).collect()
    }

    /// Sets a key of the live section to these values (several lines for repeatable raw keys,
    /// none to remove it). Existing lines are replaced where the first one was; new ones go after
    /// the live section's last setting, before the blank line that ends it.
    pub fn set_live(&mut self, key: &str, values: &[&str]) {
        let live = &mut self.sections[0];
        let first = live.lines.iter().position(|l| matches!(l, Line::Entry { key: k, .. } if k == key));
        let at = first.unwrap_or_else(|| {
            live.lines.iter().rposition(|l| matches!(l, Line::Entry { .. })).map_or(live.lines.len(), |p| p + 1)
        });
        live.lines.retain(|l| !matches!(l, Line::Entry { key: k, .. } if k == key));
        let at = at.min(live.lines.len());
        let new = values.iter().map(|v| Line::Entry {
            key: key.to_string(),
            value: (*v).to_string(),
            raw: format!("{key}: {v}"),
        });
        live.lines.splice(at..at, new);
    }
}

impl ConfFile {
    /// Whether every section after the live one (snapshots, `pending`) is as in `other`.
    pub fn same_sections_after_live(&self, other: &ConfFile) -> bool {
        self.sections[1..] == other.sections[1..]
    }

    /// The raw `lxc.*` settings of the live section, in order.
    pub fn live_raw(&self) -> Vec<(&str, &str)> {
        self.live()
            .lines
            .iter()
            .filter_map(|l| match l {
                Line::Entry { key, value, .. } if key.starts_with("lxc.") => Some((key.as_str(), value.as_str())),
                _ => None,
            })
            .collect()
    }

    /// Replaces every raw `lxc.*` setting of the live section with these, in order, where the
    /// first one was (or after the last setting); other sections are not touched.
    pub fn set_live_raw(&mut self, entries: &[(String, String)]) {
        let live = &mut self.sections[0];
        let is_raw = |l: &Line| matches!(l, Line::Entry { key, .. } if key.starts_with("lxc."));
        let at = live.lines.iter().position(is_raw).unwrap_or_else(|| {
            live.lines.iter().rposition(|l| matches!(l, Line::Entry { .. })).map_or(live.lines.len(), |p| p + 1)
        });
        let before = live.lines[..at].iter().filter(|l| is_raw(l)).count();
        live.lines.retain(|l| !is_raw(l));
        let at = at - before;
        let new =
            entries.iter().map(|(k, v)| Line::Entry { key: k.clone(), value: v.clone(), raw: format!("{k}: {v}") });
        live.lines.splice(at..at, new);
    }
}

impl fmt::Display for ConfFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut lines: Vec<&str> = Vec::new();
        for s in &self.sections {
            if let Some(h) = &s.header {
                lines.push(h);
            }
            for l in &s.lines {
                lines.push(match l {
                    Line::Entry { raw, .. } | Line::Other(raw) => raw,
                });
            }
        }
        f.write_str(&lines.join("\n"))?;
        if self.trailing_newline && !lines.is_empty() {
            f.write_str("\n")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_lines_written_with_an_equals_sign_are_read_as_proxmox_reads_them() {
        let text = "arch: amd64\nlxc.cgroup2.devices.allow = c 195:* rwm\nlxc.apparmor.profile=unconfined\nlxc.mount.auto: cgroup:rw\n";
        let f = ConfFile::parse(text).expect("parses");
        assert_eq!(f.live_values("lxc.cgroup2.devices.allow"), ["c 195:* rwm"]);
        assert_eq!(f.live_values("lxc.apparmor.profile"), ["unconfined"]);
        assert_eq!(f.live_values("lxc.mount.auto"), ["cgroup:rw"]);
        assert_eq!(f.live_values("arch"), ["amd64"]);
    }

    /// A file as Proxmox writes it: a description, raw keys with `:` and `=` in their values, a
    /// snapshot with its own raw keys, and pending changes.
    const REAL: &str = "#GPU template%0Afor vLLM
arch: amd64
cores: 4
features: nesting=1,keyctl=1
hostname: gpu-template
memory: 4096
net0: name=eth0,bridge=vmbr0,gw=10.0.0.1,hwaddr=BC:24:11:2E:5A:01,ip=10.0.0.201/24,type=veth
ostype: ubuntu
parent: gpu-snapshot
rootfs: local-zfs:subvol-901-disk-0,size=32G
swap: 512
unprivileged: 1
lxc.cgroup2.devices.allow: c 195:* rwm
lxc.mount.entry: /dev/nvidia0 dev/nvidia0 none bind,optional,create=file

[gpu-snapshot]
arch: amd64
cores: 4
hostname: gpu-template
lxc.cgroup2.devices.allow: c 195:* rwm
memory: 4096
snaptime: 1732540000

[pending]
memory: 8192
";

    #[test]
    fn round_trips_byte_for_byte() {
        let c = ConfFile::parse(REAL).expect("parses");
        assert_eq!(c.to_string(), REAL);
        assert_eq!(c.section_names(), vec!["gpu-snapshot", "pending"]);
        assert_eq!(c.live_values("lxc.mount.entry"), vec!["/dev/nvidia0 dev/nvidia0 none bind,optional,create=file"]);
        assert_eq!(
            c.live_values("net0")[0],
            "name=eth0,bridge=vmbr0,gw=10.0.0.1,hwaddr=BC:24:11:2E:5A:01,ip=10.0.0.201/24,type=veth"
        );
        let no_newline = REAL.trim_end();
        assert_eq!(ConfFile::parse(no_newline).expect("parses").to_string(), no_newline);
    }

    #[test]
    fn edits_only_the_live_section() {
        let mut c = ConfFile::parse(REAL).expect("parses");
        c.set_live("lxc.idmap", &["u 0 100000 65536", "g 0 100000 65536"]);
        c.set_live("lxc.cgroup2.devices.allow", &["c 195:* rwm", "c 508:* rwm"]);
        let text = c.to_string();
        let back = ConfFile::parse(&text).expect("parses");
        assert_eq!(back.live_values("lxc.idmap"), vec!["u 0 100000 65536", "g 0 100000 65536"]);
        assert_eq!(back.live_values("lxc.cgroup2.devices.allow"), vec!["c 195:* rwm", "c 508:* rwm"]);
        // The snapshot keeps exactly what it had.
        assert!(back.snapshot_values("gpu-snapshot", "lxc.idmap").is_empty());
        assert_eq!(back.snapshot_values("gpu-snapshot", "lxc.cgroup2.devices.allow"), vec!["c 195:* rwm"]);
        // The new lines sit before the blank line that ends the live section.
        let live_end = text.find("\n\n[gpu-snapshot]").expect("section boundary");
        assert!(text.find("lxc.idmap: u 0 100000 65536").is_some_and(|p| p < live_end));
        // Everything after the live section is byte-identical.
        assert_eq!(&text[live_end..], &REAL[REAL.find("\n\n[gpu-snapshot]").expect("boundary")..]);
        c.set_live("lxc.idmap", &[]);
        assert!(ConfFile::parse(&c.to_string()).expect("parses").live_values("lxc.idmap").is_empty());
    }

    #[test]
    fn raw_lines_are_replaced_as_a_block_in_the_live_section() {
        let mut c = ConfFile::parse(REAL).expect("parses");
        assert_eq!(c.live_raw().len(), 2);
        let want = vec![
            ("lxc.apparmor.profile".to_string(), "unconfined".to_string()),
            ("lxc.mount.entry".to_string(), "/dev/nvidia0 dev/nvidia0 none bind,optional,create=file".to_string()),
            ("lxc.mount.entry".to_string(), "/dev/nvidiactl dev/nvidiactl none bind,optional,create=file".to_string()),
        ];
        c.set_live_raw(&want);
        let text = c.to_string();
        let back = ConfFile::parse(&text).expect("parses");
        let got: Vec<(String, String)> = back.live_raw().iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(got, want);
        assert_eq!(back.snapshot_values("gpu-snapshot", "lxc.cgroup2.devices.allow"), vec!["c 195:* rwm"]);
        let boundary = "\n\n[gpu-snapshot]";
        assert_eq!(&text[text.find(boundary).expect("b")..], &REAL[REAL.find(boundary).expect("b")..]);
        c.set_live_raw(&[]);
        assert!(ConfFile::parse(&c.to_string()).expect("parses").live_raw().is_empty());
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert_eq!(ConfFile::parse("cores: 2\nthis is not a setting\n").expect_err("bad").line, 2);
        assert!(ConfFile::parse("[]\n").is_err());
    }
}
