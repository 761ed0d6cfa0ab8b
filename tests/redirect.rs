//! The key stays home (issue 11, case 6): a base URL that redirects — to another origin, or
//! from https to plain http — never gets the request, key included, to the second host. The
//! redirect is an error naming the target, and it stops a run at once.

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::IntoResponse;

use crate::util::{KEY, Workdir, repo};

/// Two servers on loopback: `redirector` answers every request with a 307 to `target`, which
/// records the headers of every request it gets.
struct Origins {
    redirector: String,
    seen: Arc<Mutex<Vec<HeaderMap>>>,
    rt: tokio::runtime::Runtime,
}

fn origins() -> Origins {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (redirector, _target) = rt.block_on(async {
        let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target_addr = target.local_addr().unwrap();
        let log = seen.clone();
        let app = axum::Router::new().fallback(move |headers: HeaderMap| {
            let log = log.clone();
            async move {
                log.lock().unwrap().push(headers);
                (StatusCode::OK, "{}")
            }
        });
        tokio::spawn(async move { axum::serve(target, app).await });
        let redirector = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = redirector.local_addr().unwrap();
        let app = axum::Router::new().fallback(move |uri: Uri| async move {
            let to = format!("http://{target_addr}{}?token=secret", uri.path());
            (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, to)]).into_response()
        });
        tokio::spawn(async move { axum::serve(redirector, app).await });
        (format!("http://{addr}/api/ext-v1"), target_addr)
    });
    Origins { redirector, seen, rt }
}

fn run(w: &Workdir, o: &Origins, args: &[&str]) -> crate::util::Run {
    let out = w
        .command(args)
        .env("TELEMETRON_BASE_URL", &o.redirector)
        .env("TELEMETRON_API_KEY", KEY)
        .output()
        .expect("run the binary");
    crate::util::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn a_redirect_is_never_followed_and_names_its_target() {
    let o = origins();
    let w = Workdir::new();
    let q = run(&w, &o, &["customer", "query", "ann@example.com"]).expect(1);
    assert!(q.stderr.contains("redirected (307) to http://127.0.0.1:"), "{}", q.stderr);
    assert!(q.stderr.contains("Check --base-url"), "{}", q.stderr);
    assert!(!q.stderr.contains("secret"), "the target's query is not repeated: {}", q.stderr);

    // A whole apply stops at its first answer instead of sending the plan.
    w.copy_dir(&repo().join("sample-data"), "sample-data");
    let a = run(&w, &o, &["apply", "--config", "sample-data/config.toml", "--state", "state.db", "--rate", "500"]);
    assert_eq!(a.code, 1, "{}\n{}", a.stdout, a.stderr);
    assert!(a.stderr.contains("redirected (307)"), "{}", a.stderr);
    assert!(o.seen.lock().unwrap().is_empty(), "the second origin got a request: {:?}", o.seen.lock().unwrap());
    drop(o.rt);
}
