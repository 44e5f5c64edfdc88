//! The HTTP endpoint: `GET /health` and `GET /metrics` (Prometheus text).
//! Deliberately tiny: two read-only routes need no HTTP framework.

use std::{fmt::Write as _, sync::Arc};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;

pub async fn run(listener: TcpListener, broker: Arc<Broker>, shutdown: CancellationToken) {
    let tls = broker
        .settings
        .http_tls
        .then(|| broker.security.tls.clone())
        .flatten();
    let auth = (broker.settings.http_authentication == "basic").then(|| {
        Arc::new(crate::security::http_auth::HttpAuth::new(
            broker.security.clone(),
        ))
    });
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(_) => continue,
            },
        };
        let broker = broker.clone();
        let (tls, auth) = (tls.clone(), auth.clone());
        tokio::spawn(async move {
            match tls {
                None => answer(stream, peer.ip(), &broker, auth.as_deref()).await,
                Some(tls) => {
                    let accepted = tokio::time::timeout(
                        std::time::Duration::from_secs(5),
                        tls.acceptor().accept(stream),
                    )
                    .await;
                    if let Ok(Ok(s)) = accepted {
                        answer(s, peer.ip(), &broker, auth.as_deref()).await;
                    }
                }
            }
        });
    }
}

/// One request: `/health` always, `/metrics` after authentication (and
/// DESCRIBE on the cluster under the authorizer) when configured.
async fn answer<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut stream: S,
    ip: std::net::IpAddr,
    broker: &Broker,
    auth: Option<&crate::security::http_auth::HttpAuth>,
) {
    let mut buf = vec![0u8; 4096];
    let n = match tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buf))
        .await
    {
        Ok(Ok(n)) => n,
        _ => return,
    };
    let request = String::from_utf8_lossy(&buf[..n]);
    let path = request.split_whitespace().nth(1).unwrap_or("");
    let authorization = request.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("authorization")
            .then(|| v.trim().to_string())
    });
    let (status, body) = match path {
        "/health" => ("200 OK", "ok\n".to_string()),
        "/metrics" => match auth {
            None if broker.security.acls_enabled
                && !broker.security.authorize(
                    crate::security::ANONYMOUS,
                    &ip.to_canonical().to_string(),
                    crate::security::acl::op::DESCRIBE,
                    crate::security::acl::resource::CLUSTER,
                    crate::security::acl::CLUSTER_NAME,
                ) =>
            {
                (
                    "403 Forbidden",
                    "not authorized (User:ANONYMOUS; set http_authentication = \"basic\")\n"
                        .to_string(),
                )
            }
            None => ("200 OK", metrics(broker)),
            Some(auth) => match auth.authenticate(authorization.as_deref(), ip).await {
                Ok(principal) => {
                    if broker.security.authorize(
                        &principal,
                        &ip.to_string(),
                        crate::security::acl::op::DESCRIBE,
                        crate::security::acl::resource::CLUSTER,
                        crate::security::acl::CLUSTER_NAME,
                    ) {
                        ("200 OK", metrics(broker))
                    } else {
                        ("403 Forbidden", "not authorized\n".to_string())
                    }
                }
                Err(_) => ("401 Unauthorized", "authentication required\n".to_string()),
            },
        },
        _ => ("404 Not Found", "not found\n".to_string()),
    };
    let challenge = if status.starts_with("401") {
        "www-authenticate: Basic realm=\"silt\"\r\n"
    } else {
        ""
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\n{challenge}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(resp.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn metrics(broker: &Broker) -> String {
    let mut out = String::new();
    {
        use crate::security::sasl::{AUTHENTICATIONS, EXPIRED, FAILURES, REAUTHENTICATIONS};
        use std::sync::atomic::Ordering::Relaxed;
        for (name, help, v) in [
            (
                "silt_sasl_authentications_total",
                "SASL authentications that succeeded",
                &AUTHENTICATIONS,
            ),
            (
                "silt_sasl_reauthentications_total",
                "SASL re-authentications (KIP-368) that succeeded",
                &REAUTHENTICATIONS,
            ),
            (
                "silt_sasl_authentication_failures_total",
                "SASL authentications refused",
                &FAILURES,
            ),
            (
                "silt_sasl_sessions_expired_total",
                "connections closed: their SASL session expired (connections_max_reauth)",
                &EXPIRED,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Relaxed)
            );
        }
    }
    broker.counters.render(&mut out);
    broker.job_counters.render(&mut out);
    let totals = broker.log.state().totals();
    let (topics, partitions, records) = (totals.topics, totals.partitions, totals.records);
    let _ = writeln!(out, "# TYPE silt_topics gauge\nsilt_topics {topics}");
    let _ = writeln!(
        out,
        "# TYPE silt_partitions gauge\nsilt_partitions {partitions}"
    );
    let _ = writeln!(out, "# TYPE silt_records gauge\nsilt_records {records}");
    let _ = writeln!(
        out,
        "# TYPE silt_live_agents gauge\nsilt_live_agents {}",
        broker.membership.live().len()
    );
    let _ = writeln!(
        out,
        "# TYPE silt_applied_revision gauge\nsilt_applied_revision {}",
        broker.log.applied()
    );
    out
}
