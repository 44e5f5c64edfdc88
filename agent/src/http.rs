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
    loop {
        let (mut stream, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(_) => continue,
            },
        };
        let broker = broker.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            let n = match tokio::time::timeout(
                std::time::Duration::from_secs(5),
                stream.read(&mut buf),
            )
            .await
            {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("");
            let (status, body) = match path {
                "/health" => ("200 OK", "ok\n".to_string()),
                "/metrics" => ("200 OK", metrics(&broker)),
                _ => ("404 Not Found", "not found\n".to_string()),
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(resp.as_bytes()).await;
        });
    }
}

fn metrics(broker: &Broker) -> String {
    let mut out = String::new();
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
