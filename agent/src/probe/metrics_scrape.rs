//! Prometheus scrape of the service's own metrics (the runbook's `curl .../metrics`).

use std::time::Duration;

use dr_proto::domain::{MetricsProbe, ServiceMetrics};
use hyper::Uri;

use super::prom_text::value_of;
use dr_proto::http_client as http_get;

/// Only finite, non-negative values are kept; anything else is not a usable reading.
fn reading(text: &str, name: &str) -> Option<f64> {
    value_of(text, name).filter(|v| v.is_finite() && *v >= 0.0)
}

pub fn parse(text: &str) -> ServiceMetrics {
    ServiceMetrics {
        memory_bytes: reading(text, "erlmcp_memory_bytes"),
        connections: reading(text, "erlmcp_connections"),
        queue_depth: reading(text, "erlmcp_queue_depth"),
        error_rate: reading(text, "erlmcp_error_rate"),
        process_count: reading(text, "erlmcp_process_count"),
        uptime_seconds: reading(text, "erlmcp_uptime_seconds"),
        requests_total: reading(text, "erlmcp_requests_total"),
    }
}

pub async fn scrape(uri: &Uri, timeout: Duration) -> MetricsProbe {
    let result = match http_get::get(uri, timeout).await {
        Ok(a) if a.status.is_success() => match std::str::from_utf8(&a.body) {
            Ok(text) => Ok(parse(text)),
            Err(_) => Err("metrics page is not UTF-8".to_string()),
        },
        Ok(a) => Err(format!("HTTP {}", a.status.as_u16())),
        Err(e) => Err(e.to_string()),
    };
    MetricsProbe { result }
}
