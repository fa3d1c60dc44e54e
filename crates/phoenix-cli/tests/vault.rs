//! `vault:` secret references against a Vault stand-in over HTTPS: KV versions 2 and 1, mounts of
//! several segments, namespaces, one read per secret, and errors that name paths and fields but
//! never a value or the token. The environment is given to the resolver as a map, never set in
//! the process (tests run in parallel threads of one process).

mod vault_double;

use std::collections::HashMap;
use std::path::Path;

use phoenix_cli::secrets::Secrets;
use phoenix_cli::vault::{Token, VaultClient, VaultSettings};
use serde_json::json;
use vault_double::VaultDouble;

const TOKEN: &str = "hvs.CAESIJ3k9QzT7rXw2mVb8LpFhYt";

/// An environment of these variables.
fn env(vars: &[(&str, String)]) -> impl Fn(&str) -> Option<String> + Send + Sync + 'static {
    let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    move |name| map.get(name).cloned()
}

/// The stand-in's address, the token and its CA in a file of `dir`.
fn vault_env(vault: &VaultDouble, dir: &Path, token: &str) -> Vec<(&'static str, String)> {
    let ca = dir.join("vault-ca.pem");
    std::fs::write(&ca, &vault.ca_pem).expect("CA file");
    vec![
        ("VAULT_ADDR", vault.addr.clone()),
        ("VAULT_TOKEN", token.to_string()),
        ("VAULT_CACERT", ca.display().to_string()),
    ]
}

fn secrets(vars: &[(&str, String)]) -> Secrets {
    Secrets::new(env(vars))
}

/// A stand-in with a KV v2 mount `secret`, a KV v1 mount `legacy` and a KV v2 mount of two
/// segments `teams/team-a`.
fn estate_vault() -> VaultDouble {
    let vault = VaultDouble::start(TOKEN);
    vault.mount("", "secret", 2);
    vault.mount("", "legacy", 1);
    vault.mount("", "teams/team-a", 2);
    vault.put(
        "",
        "secret",
        "proxmox/pve1",
        json!({ "token_secret": "0f9e8d7c-v2", "root_password": "rp-v2", "port": 8006 }),
    );
    vault.put("", "legacy", "pve1", json!({ "token_secret": "0f9e8d7c-v1" }));
    vault.put("", "teams/team-a", "db", json!({ "password": "team-a-db-pw" }));
    vault
}

#[test]
fn reads_kv_version_2_and_version_1_and_mounts_of_several_segments() {
    let vault = estate_vault();
    let dir = tempfile::tempdir().expect("tmp");
    let s = secrets(&vault_env(&vault, dir.path(), TOKEN));
    assert_eq!(s.resolve("vault:secret/proxmox/pve1#token_secret").expect("v2"), "0f9e8d7c-v2");
    assert_eq!(s.resolve("vault:legacy/pve1#token_secret").expect("v1"), "0f9e8d7c-v1");
    assert_eq!(s.resolve("vault:teams/team-a/db#password").expect("two segments"), "team-a-db-pw");
    assert_eq!(s.resolve("vault:secret/proxmox/pve1#port").expect("a number, as text"), "8006");
    let reads: Vec<String> = vault.requests().into_iter().map(|r| r.path).filter(|p| !p.starts_with("sys/")).collect();
    assert_eq!(reads, ["secret/data/proxmox/pve1", "legacy/pve1", "teams/team-a/data/db"]);
    assert!(vault.requests().iter().all(|r| r.token_ok && r.status == 200), "{:?}", vault.requests());
}

#[test]
fn each_secret_is_read_once_per_run() {
    let vault = estate_vault();
    let dir = tempfile::tempdir().expect("tmp");
    let s = secrets(&vault_env(&vault, dir.path(), TOKEN));
    assert_eq!(s.resolve("vault:secret/proxmox/pve1#token_secret").expect("first"), "0f9e8d7c-v2");
    assert_eq!(s.resolve("vault:secret/proxmox/pve1#root_password").expect("second field"), "rp-v2");
    assert_eq!(s.resolve("vault:secret/proxmox/pve1#token_secret").expect("again"), "0f9e8d7c-v2");
    let paths: Vec<String> = vault.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["sys/internal/ui/mounts/secret/proxmox/pve1", "secret/data/proxmox/pve1"]);
    // Another run reads again.
    let again = secrets(&vault_env(&vault, dir.path(), TOKEN));
    again.resolve("vault:secret/proxmox/pve1#token_secret").expect("next run");
    assert_eq!(vault.requests().len(), 4);
}

#[test]
fn a_wrong_token_is_refused_naming_the_path_never_the_token() {
    let vault = estate_vault();
    let dir = tempfile::tempdir().expect("tmp");
    let wrong = "hvs.NOT-the-right-token-4f1a";
    let e = secrets(&vault_env(&vault, dir.path(), wrong))
        .resolve("vault:secret/proxmox/pve1#token_secret")
        .expect_err("refused")
        .shown();
    assert!(e.contains("Vault refused to read `secret/proxmox/pve1`") && e.contains("permission denied (403)"), "{e}");
    assert!(e.contains("hint:") && e.contains("VAULT_TOKEN"), "{e}");
    assert!(!e.contains(wrong) && !e.contains(TOKEN) && !e.contains("0f9e8d7c"), "{e}");
    assert_eq!(vault.requests().len(), 1, "stopped at the first refusal");
    assert!(!vault.requests()[0].token_ok);
}

#[test]
fn a_missing_secret_names_the_path_and_how_to_check_it() {
    let vault = estate_vault();
    let dir = tempfile::tempdir().expect("tmp");
    let s = secrets(&vault_env(&vault, dir.path(), TOKEN));
    let e = s.resolve("vault:secret/proxmox/pve9#token_secret").expect_err("missing").shown();
    assert!(e.contains("Vault has no secret at `secret/proxmox/pve9` (KV version 2 mount `secret`)"), "{e}");
    assert!(e.contains("vault kv get -mount=secret proxmox/pve9"), "{e}");
    let e = s.resolve("vault:legacy/pve9#token_secret").expect_err("missing v1").shown();
    assert!(e.contains("Vault has no secret at `legacy/pve9` (KV version 1 mount `legacy`)"), "{e}");
    // A path under no mount: Vault's preflight refuses it.
    let e = s.resolve("vault:nowhere/pve1#token_secret").expect_err("no mount").shown();
    assert!(e.contains("`nowhere/pve1`") && e.contains("403"), "{e}");
    let e = s.resolve("vault:secret/../sys/pve1#x").expect_err("dot segments").shown();
    assert!(e.contains("is not a Vault secret path"), "{e}");
}

#[test]
fn a_missing_field_lists_the_fields_that_exist_but_not_their_values() {
    let vault = VaultDouble::start(TOKEN);
    vault.mount("", "secret", 2);
    vault.put(
        "",
        "secret",
        "app",
        json!({ "username": "u-9c1e7b", "password": "p-4d2a8f", "nested": { "k": "v-77aa" } }),
    );
    let dir = tempfile::tempdir().expect("tmp");
    let s = secrets(&vault_env(&vault, dir.path(), TOKEN));
    let e = s.resolve("vault:secret/app#pasword").expect_err("no such field").shown();
    assert!(e.contains("the Vault secret `secret/app` has no field `pasword`"), "{e}");
    assert!(e.contains("its fields are: username, password, nested"), "{e}");
    assert!(!e.contains("u-9c1e7b") && !e.contains("p-4d2a8f") && !e.contains("v-77aa"), "{e}");
    let e = s.resolve("vault:secret/app#nested").expect_err("an object").shown();
    assert!(e.contains("the field `nested` of the Vault secret `secret/app` is an object, not text"), "{e}");
    assert!(!e.contains("v-77aa"), "{e}");
}

#[test]
fn namespaces_are_sent_and_their_mounts_found() {
    let vault = VaultDouble::start(TOKEN);
    vault.mount("team-a", "kv/apps", 2);
    vault.put("team-a", "kv/apps", "pve", json!({ "token": "ns-token-value" }));
    let dir = tempfile::tempdir().expect("tmp");
    let mut vars = vault_env(&vault, dir.path(), TOKEN);
    let e = secrets(&vars).resolve("vault:kv/apps/pve#token").expect_err("not in the root namespace").shown();
    assert!(e.contains("`kv/apps/pve`") && e.contains("403"), "{e}");
    vars.push(("VAULT_NAMESPACE", "team-a/".to_string()));
    assert_eq!(secrets(&vars).resolve("vault:kv/apps/pve#token").expect("in the namespace"), "ns-token-value");
    let last = vault.requests().pop().expect("requests");
    assert_eq!((last.path.as_str(), last.namespace.as_deref()), ("kv/apps/data/pve", Some("team-a")));
}

#[test]
fn only_kv_mounts_are_read() {
    let vault = VaultDouble::start(TOKEN);
    vault.mount_kind("", "database", 1, "database");
    let dir = tempfile::tempdir().expect("tmp");
    let e = secrets(&vault_env(&vault, dir.path(), TOKEN))
        .resolve("vault:database/creds/app#password")
        .expect_err("not KV")
        .shown();
    assert!(e.contains("a `database` secrets engine, not a KV store"), "{e}");
    assert_eq!(vault.requests().len(), 1, "nothing was read from it");
}

#[test]
fn a_certificate_from_another_ca_is_refused_before_the_token_is_sent() {
    let vault = estate_vault();
    let other = VaultDouble::start(TOKEN);
    let dir = tempfile::tempdir().expect("tmp");
    let mut vars = vault_env(&vault, dir.path(), TOKEN);
    let wrong_ca = dir.path().join("other-ca.pem");
    std::fs::write(&wrong_ca, &other.ca_pem).expect("CA");
    vars.retain(|(k, _)| *k != "VAULT_CACERT");
    vars.push(("VAULT_CACERT", wrong_ca.display().to_string()));
    vars.push(("VAULT_SKIP_VERIFY", "true".to_string()));
    let e = secrets(&vars).resolve("vault:secret/proxmox/pve1#token_secret").expect_err("refused").shown();
    assert!(e.contains("TLS with 127.0.0.1") && e.contains("invalid peer certificate"), "{e}");
    assert!(e.contains("VAULT_CACERT") && e.contains("VAULT_SKIP_VERIFY is not honoured"), "{e}");
    assert!(!e.contains(TOKEN));
    assert!(vault.requests().is_empty(), "no request reached Vault: {:?}", vault.requests());
}

#[test]
fn plain_http_to_another_machine_is_refused_without_connecting() {
    for addr in ["http://192.0.2.10:8200", "http://vault.example.com:8200"] {
        let vars = [("VAULT_ADDR", addr.to_string()), ("VAULT_TOKEN", TOKEN.to_string())];
        let e = VaultClient::new(&VaultSettings::from_env(&env(&vars))).expect_err("refused").shown();
        assert!(e.contains(&format!("VAULT_ADDR {addr}")) && e.contains("plain http goes only to this machine"), "{e}");
        assert!(!e.contains("cannot reach") && !e.contains(TOKEN), "{e}");
    }
    // To this machine it is allowed (a Vault Agent listening on loopback); nothing listens here.
    let vars = [("VAULT_ADDR", "http://127.0.0.1:9".to_string()), ("VAULT_TOKEN", TOKEN.to_string())];
    let e = secrets(&vars).resolve("vault:secret/x#y").expect_err("nothing listens").shown();
    assert!(e.contains("cannot reach Vault at http://127.0.0.1:9"), "{e}");
}

#[test]
fn an_ipv6_address_is_taken_with_or_without_a_port() {
    // Plain http to the IPv6 loopback, where nothing listens on port 9: the address is taken and
    // the connection attempted.
    let vars = [("VAULT_ADDR", "http://[::1]:9".to_string()), ("VAULT_TOKEN", TOKEN.to_string())];
    let e = secrets(&vars).resolve("vault:secret/x#y").expect_err("nothing listens").shown();
    assert!(e.contains("cannot reach Vault at http://[::1]:9") && !e.contains(TOKEN), "{e}");
    // Over https: the address is taken (the CA file is read next, before anything is sent).
    for addr in ["https://[fd00::1]", "https://[fd00::1]:8200/"] {
        let vars = [("VAULT_ADDR", addr.to_string()), ("VAULT_TOKEN", TOKEN.to_string())];
        let settings =
            VaultSettings { ca_file: Some("/nonexistent/ca.pem".into()), ..VaultSettings::from_env(&env(&vars)) };
        let e = VaultClient::new(&settings).expect_err("no CA file").shown();
        assert!(e.contains("cannot read the CA file"), "{addr}: {e}");
    }
    for (addr, why) in [("https://[fd00::1", "invalid IPv6 address"), ("https://[fd00::1]:x", "invalid port number")] {
        let vars = [("VAULT_ADDR", addr.to_string()), ("VAULT_TOKEN", TOKEN.to_string())];
        let e = VaultClient::new(&VaultSettings::from_env(&env(&vars))).expect_err("broken").shown();
        assert!(e.contains(&format!("VAULT_ADDR {addr} is not a URL: {why}")), "{e}");
    }
    let vars = [("VAULT_ADDR", "https://me:s3cret@[fd00::1]".to_string()), ("VAULT_TOKEN", TOKEN.to_string())];
    let e = VaultClient::new(&VaultSettings::from_env(&env(&vars))).expect_err("credentials").shown();
    assert!(
        e.contains("VAULT_ADDR https://me:***@[fd00::1]/ has a user name or password") && !e.contains("s3cret"),
        "{e}"
    );
}

#[test]
fn settings_come_from_the_environment_as_the_vault_cli_takes_them() {
    let home = tempfile::tempdir().expect("home");
    std::fs::write(home.path().join(".vault-token"), format!("{TOKEN}\n")).expect("token file");
    let from_file = VaultSettings::from_env(&env(&[("HOME", home.path().display().to_string())]));
    assert_eq!(from_file.token, Some(Token::new(TOKEN)), "~/.vault-token, without its newline");
    assert_eq!((from_file.addr.as_str(), from_file.addr_defaulted), ("https://127.0.0.1:8200", true));
    assert_eq!((&from_file.ca_file, &from_file.namespace), (&None, &None));
    assert!(!format!("{from_file:?}").contains(TOKEN), "the token is never shown");

    let vars = [
        ("HOME", home.path().display().to_string()),
        ("VAULT_TOKEN", "hvs.from-the-variable".to_string()),
        ("VAULT_ADDR", "https://vault.lab.example:8200/".to_string()),
        ("VAULT_CACERT", "/etc/phoenix/vault-ca.pem".to_string()),
        ("VAULT_NAMESPACE", "team-a".to_string()),
        ("VAULT_CAPATH", "/etc/ssl/vault".to_string()),
    ];
    let s = VaultSettings::from_env(&env(&vars));
    assert_eq!(s.token, Some(Token::new("hvs.from-the-variable")), "VAULT_TOKEN first");
    assert_eq!((s.addr.as_str(), s.addr_defaulted), ("https://vault.lab.example:8200/", false));
    assert_eq!(s.ca_file.as_deref(), Some(Path::new("/etc/phoenix/vault-ca.pem")));
    assert_eq!((s.namespace.as_deref(), s.not_honoured.as_slice()), (Some("team-a"), ["VAULT_CAPATH"].as_slice()));

    let none = VaultSettings::from_env(&env(&[("VAULT_ADDR", "http://127.0.0.1:8200".to_string())]));
    let e = VaultClient::new(&none).expect_err("no token").shown();
    assert!(e.contains("no Vault token") && e.contains("vault login"), "{e}");
    let bad = VaultSettings::from_env(&env(&[("VAULT_ADDR", "ftp://vault:8200".into()), ("VAULT_TOKEN", "t".into())]));
    assert!(VaultClient::new(&bad).expect_err("bad scheme").shown().contains("is not an https:// URL"));
}

#[test]
fn an_unreachable_vault_says_where_it_looked() {
    // A port that was just free: nothing listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tmp");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, VaultDouble::start(TOKEN).ca_pem).expect("CA");
    let vars = [
        ("VAULT_ADDR", format!("https://127.0.0.1:{port}")),
        ("VAULT_TOKEN", TOKEN.to_string()),
        ("VAULT_CACERT", ca.display().to_string()),
    ];
    let e = secrets(&vars).resolve("vault:secret/proxmox/pve1#token_secret").expect_err("unreachable").shown();
    assert!(e.contains(&format!("cannot reach Vault at https://127.0.0.1:{port}")), "{e}");
    assert!(e.contains("check VAULT_ADDR") && !e.contains(TOKEN), "{e}");
}

/// An error as the command line shows it: its message, then its hint.
trait Shown {
    fn shown(&self) -> String;
}

impl Shown for phoenix_cli::secrets::SecretError {
    fn shown(&self) -> String {
        format!("{}\n  hint: {}", self.message, self.hint.as_deref().unwrap_or_default())
    }
}
