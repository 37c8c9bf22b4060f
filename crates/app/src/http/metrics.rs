//! Prometheus text metrics: request counts and latency histograms by route pattern.
//!
//! Hand-written rather than a metrics crate: a handful of counters behind one mutex is all the
//! service needs, and it keeps the dependency graph small.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Default)]
struct Series {
    count: u64,
    sum: f64,
    buckets: [u64; BUCKETS.len()],
}

/// The series of one route pattern, by method and status.
type RouteSeries = HashMap<(String, u16), Series>;

/// Request metrics of the process.
#[derive(Default)]
pub struct Metrics {
    /// By route pattern, then method and status: looked up with the `&str` of each request,
    /// without building a key.
    requests: Mutex<HashMap<String, RouteSeries>>,
    refusals: Mutex<BTreeMap<&'static str, u64>>,
    /// Signing requests by broker (`binance`, `kraken` or `other`) and outcome.
    signatures: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// Records one request.
    pub fn observe(&self, method: &str, route: &str, status: u16, latency: Duration) {
        let seconds = latency.as_secs_f64();
        let mut requests = self
            .requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !requests.contains_key(route) {
            requests.insert(route.to_owned(), HashMap::new());
        }
        let Some(by_method) = requests.get_mut(route) else {
            return;
        };
        let series = match by_method
            .iter_mut()
            .find(|((m, s), _)| m == method && *s == status)
        {
            Some((_, series)) => series,
            None => by_method.entry((method.to_owned(), status)).or_default(),
        };
        series.count += 1;
        series.sum += seconds;
        for (bucket, bound) in series.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
    }

    /// Counts one request refused by the rate limit `limit`.
    pub fn refused(&self, limit: &'static str) {
        *self
            .refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(limit)
            .or_default() += 1;
    }

    /// Counts one answer of the signing route: `outcome` is `signed` or the error code.
    pub fn signature(&self, broker: &str, outcome: &'static str) {
        // A fixed label set: a service sending made-up broker names cannot grow the series.
        let broker = ["binance", "kraken", "alpaca"]
            .into_iter()
            .find(|known| broker.trim().eq_ignore_ascii_case(known))
            .unwrap_or("other");
        *self
            .signatures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry((broker, outcome))
            .or_default() += 1;
    }

    /// The metrics in Prometheus text format, followed by `extra` lines.
    pub fn render(&self, extra: &str) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP broker_signatures_total Answers of the signing route, by broker and outcome.\n",
        );
        out.push_str("# TYPE broker_signatures_total counter\n");
        for ((broker, outcome), count) in self
            .signatures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(
                out,
                "broker_signatures_total{{broker=\"{broker}\",outcome=\"{outcome}\"}} {count}"
            );
        }
        out.push_str("# HELP rate_limited_total Requests refused with 429, by limit.\n");
        out.push_str("# TYPE rate_limited_total counter\n");
        for (limit, count) in self
            .refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(out, "rate_limited_total{{limit=\"{limit}\"}} {count}");
        }
        out.push_str(
            "# HELP http_requests_total HTTP requests by method, route pattern and status.\n",
        );
        out.push_str("# TYPE http_requests_total counter\n");
        let guard = self
            .requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Sorted, so that the text is stable from one scrape to the next.
        let requests: BTreeMap<(&str, &str, u16), &Series> = guard
            .iter()
            .flat_map(|(route, by_method)| {
                by_method.iter().map(move |((method, status), series)| {
                    ((route.as_str(), method.as_str(), *status), series)
                })
            })
            .collect();
        for ((route, method, status), series) in requests.iter() {
            let _ = writeln!(
                out,
                "http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {}",
                series.count
            );
        }
        out.push_str("# HELP http_request_duration_seconds HTTP request latency by method and route pattern.\n");
        out.push_str("# TYPE http_request_duration_seconds histogram\n");
        let mut by_route: BTreeMap<(&str, &str), Series> = BTreeMap::new();
        for ((route, method, _), series) in requests.iter() {
            let merged = by_route.entry((*method, *route)).or_default();
            merged.count += series.count;
            merged.sum += series.sum;
            for (m, s) in merged.buckets.iter_mut().zip(series.buckets) {
                *m += s;
            }
        }
        for ((method, route), series) in by_route {
            let labels = format!("method=\"{method}\",route=\"{route}\"");
            for (bound, count) in BUCKETS.iter().zip(series.buckets) {
                let _ = writeln!(
                    out,
                    "http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                series.count
            );
            let _ = writeln!(
                out,
                "http_request_duration_seconds_sum{{{labels}}} {}",
                series.sum
            );
            let _ = writeln!(
                out,
                "http_request_duration_seconds_count{{{labels}}} {}",
                series.count
            );
        }
        out.push_str(extra);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_route_pattern() {
        let metrics = Metrics::default();
        metrics.observe("GET", "/users/{user_id}", 200, Duration::from_millis(3));
        metrics.observe("GET", "/users/{user_id}", 200, Duration::from_millis(30));
        let text = metrics.render("");
        assert!(text.contains(
            "http_requests_total{method=\"GET\",route=\"/users/{user_id}\",status=\"200\"} 2"
        ));
        assert!(text.contains(
            "http_request_duration_seconds_bucket{method=\"GET\",route=\"/users/{user_id}\",le=\"0.005\"} 1"
        ));
    }
}
