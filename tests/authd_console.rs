//! The operator console in a real browser: authd with the console on, over
//! a real Redis, and `tests/console/console.mjs` driving headless Chromium
//! through playwright-core (sign in, a wrong key refused, create a tenant
//! and find it in the tenant list,
//! New API key read from the page and used with curl, New test client key,
//! revoked and refused, the audit trail, roll, revoke a key, revoke all and
//! delete a client, revoke-before); screenshots
//! go to `target/console-screenshots/`. node, /usr/bin/chromium and
//! playwright-core (`scripts/test.sh` installs them) missing = a failure.

use std::path::{Path, PathBuf};
use std::time::Duration;

use authd::auth::OperatorAuth;
use cred_core::Authority;
use cred_core::cache::CacheOptions;
use cred_core::operator::{Allowlist, OperatorSecret};
use cred_core::store::RedisStore;
use cred_core::store::redis::RedisOptions;
use cred_tests::{Backend, Redis};
use tokio::net::TcpListener;

const CHROMIUM: &str = "/usr/bin/chromium";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

#[tokio::test]
async fn the_console_in_headless_chromium() {
    let root = root();
    let playwright = root.join(".tools/playwright/node_modules/playwright-core");
    assert!(Path::new(CHROMIUM).exists(), "{CHROMIUM} is missing: apt-get install -y chromium (scripts/test.sh does)");
    assert!(
        playwright.join("package.json").exists(),
        "playwright-core is missing at {}: npm i --prefix .tools/playwright playwright-core (scripts/test.sh does)",
        playwright.display()
    );
    let redis = Redis::start(Backend::Standalone);
    let store = RedisStore::open(&redis.target(), RedisOptions::default()).await.expect("connect to test redis");
    let (secret, _) = OperatorSecret::generate();
    let (id, operator) = secret.issue();
    let operators = OperatorAuth::new(secret, Allowlist::of([id]));
    let authority = Authority::new(store).with_api_key_cache(CacheOptions::default());
    let cache = authority.api_key_cache().cloned().expect("cache on");
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", http.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let opts = cred_serve::serve::ServeOptions::new(Duration::from_secs(2));
    let server = tokio::spawn(async move {
        let http = authd::http::Listen { listener: http, console: true };
        authd::server::run_with_http(grpc, Some(http), authority, operators, opts, async {
            let _ = stopped.await;
        })
        .await
        .expect("authd serves");
    });
    cred_tests::assert_eventually!(
        cache.push_connected(),
        Duration::from_secs(5),
        "authd's push channel never came up"
    );

    let shots = root.join("target/console-screenshots");
    let run = tokio::process::Command::new("node")
        .arg(root.join("tests/console/console.mjs"))
        .args([url.as_str(), operator.as_str()])
        .arg(&shots)
        .env("PLAYWRIGHT_CORE", &playwright)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the browser test finishes within 120 s")
        .expect("node is needed by this test (apt-get install -y nodejs)");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{stdout}{stderr}");
    assert!(out.status.success(), "console.mjs failed ({}):\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains("console test: ok"), "{stdout}");
    for shot in [
        "1-signin-refused.png",
        "2-tenants.png",
        "3-api-key-shown-once.png",
        "4-tenant.png",
        "5-after-revoke-before.png",
    ] {
        let len = std::fs::metadata(shots.join(shot)).map(|m| m.len()).unwrap_or(0);
        assert!(len > 1000, "screenshot {shot} missing or empty");
    }
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), server).await.expect("authd stops").expect("authd task");
}
